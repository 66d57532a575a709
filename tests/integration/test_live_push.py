"""Live push: ``approvals.broadcast`` routes events to the right groups on this run's channel
layer (in memory in embedded mode, Redis in services mode), from any thread; sockets without
a user are turned away."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser

from approvals.broadcast import (
    APPROVALS_GROUP,
    EVENT_MESSAGE_TYPE,
    event_push,
    group_for_execution,
    register_server_loop,
)
from approvals.consumers import CLOSE_UNAUTHORIZED
from approvals.routing import websocket_urlpatterns
from tests.support.websocket import WebsocketCommunicator

TIMEOUT = 5


def event(execution_id: uuid.UUID, event_type: str, step_key: str = "") -> dict[str, Any]:
    return {
        "event_type": event_type,
        "execution_id": str(execution_id),
        "step_key": step_key,
        "data": {},
    }


async def listen(*groups: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return channel


async def received(channel: str, wait: float = TIMEOUT) -> list[dict[str, Any]]:
    """The events that reach ``channel``: waits ``wait`` for the first, then 0.2 s for more."""
    layer = get_channel_layer()
    events = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), wait)
        except TimeoutError:
            return events
        assert message["type"] == EVENT_MESSAGE_TYPE
        events.append(message["event"])
        wait = 0.2


def test_execution_group_names_are_valid_and_format_independent() -> None:
    execution_id = uuid.uuid4()

    name = group_for_execution(execution_id)

    assert name == f"execution.{execution_id.hex}"
    assert group_for_execution(str(execution_id)) == name
    assert len(name) < 100


def test_events_reach_their_execution_and_the_inbox_only_for_suspensions() -> None:
    execution_id = uuid.uuid4()

    async def scenario() -> tuple[list[Any], list[Any]]:
        page = await listen(group_for_execution(execution_id))
        inbox = await listen(APPROVALS_GROUP)

        event_push(event(execution_id, "step_finish", "fetch"))
        event_push(event(execution_id, "suspend", "approve"))
        event_push(event(execution_id, "resume", "approve"))
        event_push(event(execution_id, "cancel", "approve"))  # a pending approval cancelled
        event_push(event(execution_id, "cancel"))  # the execution, waiting on no approval
        event_push(event(uuid.uuid4(), "step_finish", "fetch"))  # another execution's

        return await received(page), await received(inbox)

    page_events, inbox_events = async_to_sync(scenario)()

    assert [e["event_type"] for e in page_events] == [
        "step_finish",
        "suspend",
        "resume",
        "cancel",
        "cancel",
    ]
    assert [(e["event_type"], e["step_key"]) for e in inbox_events] == [
        ("suspend", "approve"),
        ("resume", "approve"),
        ("cancel", "approve"),
    ]


def test_a_push_from_a_worker_thread_reaches_the_server_loop() -> None:
    execution_id = uuid.uuid4()

    async def scenario() -> list[Any]:
        # As polos_run does: the server's loop is where the in-memory layer lives.
        register_server_loop(asyncio.get_running_loop())
        try:
            page = await listen(group_for_execution(execution_id))
            worker = threading.Thread(target=event_push, args=[event(execution_id, "resume")])
            worker.start()
            events = await received(page)
            worker.join()
            return events
        finally:
            register_server_loop(None)

    events = async_to_sync(scenario)()

    assert [(e["event_type"], e["execution_id"]) for e in events] == [("resume", str(execution_id))]


@pytest.mark.django_db(transaction=True)
def test_sockets_without_a_user_are_closed_with_4401() -> None:
    router = URLRouter(websocket_urlpatterns)

    async def anonymous(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await router({**scope, "user": AnonymousUser()}, receive, send)

    async def close_of(path: str) -> dict[str, Any]:
        communicator = WebsocketCommunicator(anonymous, path)
        # Accepted, then closed: the client learns why.
        assert await communicator.connect(timeout=TIMEOUT)
        close = await communicator.receive_output(timeout=TIMEOUT)
        await communicator.disconnect(code=CLOSE_UNAUTHORIZED)
        return close

    async def scenario() -> list[dict[str, Any]]:
        paths = ("/ws/approvals/", f"/ws/executions/{uuid.uuid4()}/")
        return list(await asyncio.gather(*(close_of(path) for path in paths)))

    closes = async_to_sync(scenario)()

    assert closes == [{"type": "websocket.close", "code": CLOSE_UNAUTHORIZED}] * 2
