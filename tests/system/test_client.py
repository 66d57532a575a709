"""The integration surface end to end: live pushes from a real worker through the channel
layer, and the Python client over real HTTP against ``polos_run`` (server and worker)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.test import Client

from approvals import broadcast
from polos_site.asgi import application
from tests.support.api import make_user
from tests.support.processes import celery_worker, polos_run, wait_until
from workflows import services
from workflows.client import (
    AuthenticationFailed,
    Conflict,
    ExecutionCancelled,
    ExecutionFailed,
    NotFound,
    PermissionDenied,
    PolosClient,
    ValidationFailed,
    WaitTimeout,
)
from workflows.models import Suspension

TEST_FLOWS = "tests.support.flows"
SEED = "charge-customer"
# Transactional: the server and the worker are other processes, they only see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)
BIG_CHARGE = {"customer_id": "c-42", "amount": 2500, "description": "annual plan"}


# -- live push from a real worker (first in the module: no server is running yet) --------------


@contextlib.contextmanager
def real_worker() -> Iterator[None]:
    """A worker that is not this test's thread of control: a ``celery worker`` process on
    Redis in services mode; in embedded mode (whose broker lives in this process) the
    in-process worker thread, as ``polos_run`` runs it."""
    if settings.EMBEDDED:
        from polos_site.embedded import start_worker_thread

        handle = start_worker_thread()
        try:
            yield
        finally:
            handle.stop()
    else:
        with celery_worker(env={"POLOS_WORKFLOW_MODULES": TEST_FLOWS}):
            yield


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


class WebsocketCommunicator(ApplicationCommunicator):
    """Channels' communicator, minus its import of daphne (not installed here)."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        scope = {
            "type": "websocket",
            "path": path,
            "query_string": b"",
            "headers": headers,
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float = 5) -> bool:
        await self.send_input({"type": "websocket.connect"})
        return (await self.receive_output(timeout))["type"] == "websocket.accept"

    async def receive_json_from(self, timeout: float = 5) -> dict:
        message = await self.receive_output(timeout)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def disconnect(self) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.wait(5)


def communicator(path: str, cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(path, headers)


async def receive_until(socket: WebsocketCommunicator, predicate, timeout: float) -> list[dict]:
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while not any(predicate(event) for event in received):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"nothing matching arrived in {timeout} s; got {received}"
        received.append(await socket.receive_json_from(timeout=remaining))
    return received


def test_a_suspend_committed_by_a_worker_is_pushed_to_the_execution_and_inbox_sockets():
    import tests.support.flows  # noqa: F401 - the worker thread (embedded) needs them here

    watcher = make_user("watcher", staff=True)
    cookie = session_cookie(watcher)
    with real_worker():
        execution, _ = services.execution_start(workflow_id="test-two-stage", payload={})
        wait_until(
            lambda: Suspension.objects.filter(
                execution=execution, step_key="manager_approval"
            ).exists(),
            timeout=60,
            what="the worker to suspend on the manager's approval",
        )

        async def scenario() -> tuple[list[dict], list[dict], float]:
            import asyncio

            if settings.EMBEDDED:
                # The in-memory layer is not thread-safe: the worker thread hands its sends to
                # this loop, as it hands them to the server's loop under polos_run.
                broadcast.register_server_loop(asyncio.get_running_loop())
            execution_socket = communicator(f"/ws/executions/{execution.pk}/", cookie)
            inbox_socket = communicator("/ws/approvals/", cookie)
            try:
                assert await execution_socket.connect()
                assert await inbox_socket.connect()
                decided_at = time.monotonic()
                await sync_to_async(services.suspension_resolve)(
                    execution_id=execution.pk,
                    step_key="manager_approval",
                    data={"approved": True},
                    user=watcher,
                )

                def finance_suspend(event: dict) -> bool:
                    return (event["event_type"], event.get("step_key")) == (
                        "suspend",
                        "finance_approval",
                    )

                on_execution = await receive_until(execution_socket, finance_suspend, 60)
                latency = time.monotonic() - decided_at
                on_inbox = await receive_until(inbox_socket, finance_suspend, 10)
                return on_execution, on_inbox, latency
            finally:
                await execution_socket.disconnect()
                await inbox_socket.disconnect()
                if settings.EMBEDDED:
                    broadcast.register_server_loop(None)

        on_execution, on_inbox, latency = async_to_sync(scenario)()

    types = [event["event_type"] for event in on_execution]
    assert types[0] == "resume"  # pushed by this process when the decision committed
    assert types[-1] == "suspend"  # pushed by the worker after its commit
    assert {event["execution_id"] for event in on_execution} == {str(execution.pk)}
    suspend = on_execution[-1]
    assert suspend["data"]["step_key"] == "finance_approval"
    assert isinstance(suspend["sequence_id"], int)
    assert on_inbox[-1]["sequence_id"] == suspend["sequence_id"]
    print(f"decision → worker → suspend pushed: {latency * 1000:.0f} ms")


def test_sockets_without_a_session_are_refused():
    execution_id = uuid.uuid4()

    async def scenario() -> list[dict]:
        closes = []
        for path in (f"/ws/executions/{execution_id}/", "/ws/approvals/"):
            socket = communicator(path, None)
            assert await socket.connect()  # accepted, then closed: the client learns why
            closes.append(await socket.receive_output(timeout=5))
            await socket.disconnect()  # what the server does once the client closed too
        return closes

    closes = async_to_sync(scenario)()

    assert [close["type"] for close in closes] == ["websocket.close"] * 2
    assert {close["code"] for close in closes} == {4401}


# -- the client against a running server --------------------------------------------------------


@dataclass
class Running:
    base_url: str
    key: str  # an approver's (active staff)
    viewer_key: str  # an active user who may not decide

    def client(self, key: str | None = None) -> PolosClient:
        return PolosClient(self.base_url, key or self.key, timeout=10)


@pytest.fixture(scope="module")
def server(django_db_setup) -> Iterator[str]:
    """One ``polos_run`` (server and worker) for the module's client tests."""
    with polos_run(env={"POLOS_WORKFLOW_MODULES": TEST_FLOWS}) as server:
        yield server.base_url


@pytest.fixture
def running(server, transactional_db) -> Running:
    # Committed, so the server sees them; each test's flush removes them again.
    _, key = services.api_key_create(name="system", user=make_user("ann", staff=True))
    _, viewer_key = services.api_key_create(name="viewer", user=make_user("vic"))
    return Running(base_url=server, key=key, viewer_key=viewer_key)


def test_the_seed_flow_start_listen_for_the_suspend_resume_and_result(running):
    seen = []
    with running.client() as polos:
        handle = polos.run(SEED, BIG_CHARGE)
        for event in polos.events.stream_workflow(SEED, handle.id, timeout=60):
            seen.append(event)
            if event.event_type == "suspend":
                assert event.data["data"]["amount"] == 2500
                answer = polos.resume(
                    SEED, handle.id, event.step_key, {"approved": True, "comment": "fine"}
                )
                assert answer["status"] == "resumed"
        result = handle.result(timeout=30)

    assert result["status"] == "charged" and result["amount"] == 2500
    types = [event.event_type for event in seen]
    assert types[0] == "execution_start"
    assert types.index("suspend") < types.index("resume") < types.index("execution_finish")
    assert types[-1] == "execution_finish"
    assert seen[-1].data["status"] == "completed"
    ids = [event.sequence_id for event in seen]
    assert len(set(ids)) == len(ids)


def test_a_stream_opened_after_the_suspend_still_sees_it(running):
    with running.client() as polos:
        handle = polos.run(SEED, BIG_CHARGE)
        wait_until(lambda: handle.get()["status"] == "waiting", timeout=30, what="the suspend")

        stream = polos.events.stream_workflow(SEED, handle.id, timeout=60)
        suspend = next(event for event in stream if event.event_type == "suspend")
        # Decide by publishing a resume event on the step's topic, as Polos integrations do.
        polos.events.publish(f"{suspend.step_key}/{handle.id}", "resume", {"approved": False})
        rest = [event.event_type for event in stream]
        result = handle.result(timeout=30)

    assert suspend.step_key == "high_value_approval"
    assert "resume" in rest and rest[-1] == "execution_finish"
    assert result["status"] == "rejected"


def test_a_stream_continues_after_a_known_sequence_id(running):
    with running.client() as polos:
        handle = polos.run("test-typed", {"item": "pen", "amount": 2})
        assert handle.result(timeout=30) == {"item": "pen", "double": 4.0}
        everything = list(polos.events.stream_workflow("test-typed", handle.id, timeout=30))
        after_first = list(
            polos.events.stream_workflow(
                "test-typed", handle.id, everything[0].sequence_id, timeout=30
            )
        )

    assert [e.sequence_id for e in after_first] == [e.sequence_id for e in everything[1:]]
    assert after_first[-1].event_type == "execution_finish"


def test_result_of_a_quick_workflow_and_idempotent_runs(running):
    with running.client() as polos:
        first = polos.run("test-typed", {"item": "ink", "amount": 1}, idempotency_key="order-1")
        again = polos.run("test-typed", {"item": "ink", "amount": 1}, idempotency_key="order-1")
        with pytest.raises(Conflict) as conflict:
            polos.run("test-typed", {"item": "ink", "amount": 9}, idempotency_key="order-1")

        assert first.result(timeout=30) == {"item": "ink", "double": 2.0}
    assert (first.created, again.created) == (True, False)
    assert again.id == first.id
    assert conflict.value.status == 409 and conflict.value.code == "idempotency_conflict"


def test_result_raises_when_the_execution_fails_or_is_cancelled(running):
    with running.client() as polos:
        failing = polos.run("test-fails", {})
        with pytest.raises(ExecutionFailed) as failed:
            failing.result(timeout=30)

        waiting = polos.run(SEED, BIG_CHARGE)
        wait_until(lambda: waiting.get()["status"] == "waiting", timeout=30, what="the suspend")
        with pytest.raises(WaitTimeout):
            waiting.result(timeout=0.5)
        assert polos.cancel_execution(waiting.id)["status"] == "cancelled"
        with pytest.raises(ExecutionCancelled):
            waiting.result(timeout=30)
        with pytest.raises(Conflict) as cancelled_twice:
            polos.cancel_execution(waiting.id)

    assert "declined" in failed.value.error["message"]
    assert cancelled_twice.value.code == "execution_finished"


def test_errors_come_back_typed_with_status_and_detail(running):
    with running.client() as polos, running.client(running.viewer_key) as viewer:
        handle = polos.run(SEED, BIG_CHARGE)
        wait_until(lambda: handle.get()["status"] == "waiting", timeout=30, what="the suspend")

        with pytest.raises(NotFound) as unknown_workflow:
            polos.run("no-such-flow", {})
        with pytest.raises(ValidationFailed) as bad_payload:
            polos.run(SEED, {"customer_id": "", "amount": -1})
        with pytest.raises(ValidationFailed) as bad_decision:
            polos.resume(SEED, handle.id, "high_value_approval", {"approved": "maybe"})
        with pytest.raises(PermissionDenied) as not_an_approver:
            viewer.resume(SEED, handle.id, "high_value_approval", {"approved": True})
        with pytest.raises(NotFound):
            polos.resume("test-typed", handle.id, "high_value_approval", {"approved": True})
        polos.resume(SEED, handle.id, "high_value_approval", {"approved": True})
        with pytest.raises(Conflict) as decided_twice:
            polos.resume(SEED, handle.id, "high_value_approval", {"approved": False})
        with pytest.raises(NotFound):
            polos.get_execution(str(uuid.uuid4()))

    with (
        PolosClient(running.base_url, "pk_wrong") as stranger,
        pytest.raises(AuthenticationFailed) as wrong_key,
    ):
        stranger.list_workflows()

    assert unknown_workflow.value.status == 404
    assert unknown_workflow.value.code == "workflow_not_found"
    assert {e["field"] for e in bad_payload.value.errors} == {"customer_id", "amount"}
    assert bad_decision.value.errors == [{"field": "approved", "message": "Choose yes or no."}]
    assert not_an_approver.value.status == 403
    assert decided_twice.value.body["decided_by"] == "ann"
    assert decided_twice.value.body["status"] == "resumed"
    assert wrong_key.value.status == 401


def test_listings_through_the_client(running):
    with running.client() as polos:
        handle = polos.run(SEED, BIG_CHARGE)
        wait_until(lambda: handle.get()["status"] == "waiting", timeout=30, what="the suspend")

        workflows = {w["workflow_id"] for w in polos.list_workflows()}
        executions = polos.list_executions(workflow_id=SEED, status="waiting")
        approvals = polos.list_approvals(workflow_id=SEED)
        events, _more = polos.events.list(execution_id=handle.id)
        handle.cancel()

    assert {SEED, "test-typed"} <= workflows
    assert handle.id in {item["execution_id"] for item in executions["items"]}
    assert handle.id in {item["execution_id"] for item in approvals["items"]}
    assert [e.event_type for e in events][:1] == ["execution_start"]
