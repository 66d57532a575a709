"""The console's WebSockets refuse who may not watch and forward only what the user may
decide (on this run's channel layer)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from django.contrib.auth import get_user_model

import tests.support.flows_console  # noqa: F401 - registers the console's test workflows
from approvals.broadcast import event_push
from approvals.consumers import CLOSE_FORBIDDEN
from approvals.models import ApproverRule
from approvals.routing import websocket_urlpatterns
from tests.support.websocket import WebsocketCommunicator
from workflows import services
from workflows.models import Execution, Suspension, WorkflowDefinition

# The consumers query from their own threads: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5
User = get_user_model()


def as_user(user: Any) -> Any:
    router = URLRouter(websocket_urlpatterns)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await router({**scope, "user": user}, receive, send)

    return app


def waiting(workflow_id: str, payload: dict[str, Any]) -> Execution:
    execution, _ = services.execution_start(workflow_id=workflow_id, payload=payload)
    services.execution_advance(execution_id=execution.pk)
    return execution


def suspend_event(suspension: Suspension) -> dict[str, Any]:
    return {
        "sequence_id": suspension.pk,
        "topic": suspension.topic,
        "event_type": "suspend",
        "execution_id": str(suspension.execution_id),
        "workflow_id": suspension.workflow_id,
        "step_key": suspension.step_key,
        "data": {},
    }


def test_execution_socket_refuses_a_user_who_may_not_see_it_with_4403() -> None:
    execution = waiting("console-simple", {})
    outsider = User.objects.create_user("olga")
    starter_execution, _ = services.execution_start(
        workflow_id="console-simple", payload={}, user=outsider
    )

    async def scenario() -> tuple[dict[str, Any], bool]:
        refused = WebsocketCommunicator(as_user(outsider), f"/ws/executions/{execution.pk}/")
        assert await refused.connect(timeout=TIMEOUT)  # accepted, then closed with the reason
        closed = await refused.receive_output(timeout=TIMEOUT)
        await refused.disconnect(code=CLOSE_FORBIDDEN)
        own = WebsocketCommunicator(as_user(outsider), f"/ws/executions/{starter_execution.pk}/")
        assert await own.connect(timeout=TIMEOUT)
        stays_open = await own.receive_nothing(0.2)
        await own.disconnect()
        return closed, stays_open

    closed, stays_open = async_to_sync(scenario)()

    assert closed == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}
    assert stays_open


def test_unknown_execution_socket_is_refused_to_a_non_staff_user() -> None:
    user = User.objects.create_user("una")

    async def scenario() -> dict[str, Any]:
        socket = WebsocketCommunicator(as_user(user), f"/ws/executions/{uuid.uuid4()}/")
        assert await socket.connect(timeout=TIMEOUT)
        closed = await socket.receive_output(timeout=TIMEOUT)
        # Let the consumer finish: a task left pending would hang the loop's shutdown.
        await socket.disconnect(code=CLOSE_FORBIDDEN)
        return closed

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


def test_inbox_socket_forwards_only_the_approvals_the_user_may_decide() -> None:
    services.workflow_definitions_sync()
    manager = User.objects.create_user("mona")
    multi = WorkflowDefinition.objects.get(workflow_id="multi-stage-approval")
    ApproverRule.objects.create(workflow=multi, step_key="manager_approval").users.add(manager)
    purchase = waiting("multi-stage-approval", {"item": "Desk", "amount": 20000})
    other = waiting("console-simple", {})  # no rules: staff decide it, mona is not staff
    manager_step = Suspension.objects.get(execution=purchase)
    finance_step = Suspension.objects.create(
        execution=purchase, workflow_id=purchase.workflow_id, step_key="finance_approval"
    )
    not_hers = Suspension.objects.get(execution=other)

    async def scenario() -> tuple[list[Any], bool]:
        inbox = WebsocketCommunicator(as_user(manager), "/ws/approvals/")
        assert await inbox.connect(timeout=TIMEOUT)
        event_push(suspend_event(not_hers))
        event_push(suspend_event(finance_step))
        event_push(suspend_event(manager_step))
        event_push({**suspend_event(manager_step), "event_type": "resume"})
        received = [await inbox.receive_json_from(TIMEOUT) for _ in range(2)]
        nothing_else = await inbox.receive_nothing(0.3)
        await inbox.disconnect()
        return received, nothing_else

    received, nothing_else = async_to_sync(scenario)()

    assert [(e["step_key"], e["event_type"]) for e in received] == [
        ("manager_approval", "suspend"),
        ("manager_approval", "resume"),  # decided: it leaves her inbox too
    ]
    assert nothing_else
