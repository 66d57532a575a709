"""The Python client's own behaviour against a scripted server (httpx's MockTransport): typed
errors, reconnecting streams, ``result()``. The real server is in tests/system/test_client.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from workflows import client as polos_client
from workflows.client import (
    AuthenticationFailed,
    Conflict,
    ExecutionCancelled,
    ExecutionFailed,
    NotFound,
    PolosClient,
    ServerError,
    ValidationFailed,
)

EXECUTION = "6f1c8a52-7d0e-4bd5-9a51-8e0d3f6f2f11"
STREAM = f"/api/v1/executions/{EXECUTION}/events/stream"


def event(sequence_id: int, event_type: str, **data) -> dict:
    return {
        "sequence_id": sequence_id,
        "topic": f"workflow/flow/{EXECUTION}",
        "event_type": event_type,
        "execution_id": EXECUTION,
        "workflow_id": "flow",
        "step_key": "",
        "data": data,
        "created_at": "2026-01-01T00:00:00+00:00",
    }


def sse(*events: dict) -> httpx.Response:
    text = "retry: 1000\n\n" + "".join(
        f"id: {e['sequence_id']}\nevent: {e['event_type']}\ndata: {json.dumps(e)}\n\n"
        for e in events
    )
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)


def scripted(handler: Callable[[httpx.Request], httpx.Response]) -> PolosClient:
    return PolosClient("http://polos.test", "pk_key", transport=httpx.MockTransport(handler))


@pytest.fixture(autouse=True)
def no_reconnect_delay(monkeypatch):
    monkeypatch.setattr(polos_client, "RECONNECT_DELAYS", (0.0,))


def test_requests_carry_the_key_and_go_under_api_v1():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=[])

    for base in ("http://polos.test", "http://polos.test/", "http://polos.test/api/v1"):
        with PolosClient(base, "pk_key", transport=httpx.MockTransport(handler)) as polos:
            polos.list_workflows()

    assert [str(r.url) for r in seen] == ["http://polos.test/api/v1/workflows"] * 3
    assert {r.headers["Authorization"] for r in seen} == {"Bearer pk_key"}


def test_run_sends_the_payload_and_the_idempotency_key():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(
            200, json={"execution_id": EXECUTION, "workflow_id": "a/b", "status": "waiting"}
        )

    handle = scripted(handler).run("a/b", {"x": 1}, idempotency_key="k-1")

    (request,) = seen
    assert request.url.raw_path == b"/api/v1/workflows/a%2Fb/run"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert json.loads(request.content) == {"payload": {"x": 1}}
    assert (handle.id, handle.created) == (EXECUTION, False)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthenticationFailed),
        (404, NotFound),
        (409, Conflict),
        (422, ValidationFailed),
        (503, ServerError),
    ],
)
def test_error_answers_become_typed_exceptions(status, kind):
    body = {"detail": "nope", "code": "some_code", "errors": [{"field": "a", "message": "m"}]}
    polos = scripted(lambda request: httpx.Response(status, json=body))

    with pytest.raises(kind) as raised:
        polos.get_execution(EXECUTION)

    assert (raised.value.status, raised.value.detail, raised.value.code) == (
        status,
        "nope",
        "some_code",
    )
    assert raised.value.body == body
    if kind is ValidationFailed:
        assert raised.value.errors == [{"field": "a", "message": "m"}]


def test_an_error_without_a_json_body_keeps_its_text():
    polos = scripted(lambda request: httpx.Response(502, text="Bad Gateway from the proxy"))

    with pytest.raises(ServerError, match="Bad Gateway from the proxy") as raised:
        polos.get_execution(EXECUTION)

    assert raised.value.code is None


def test_a_stream_cut_before_the_finish_reconnects_with_last_event_id():
    calls = []

    def handler(request):
        calls.append(request)
        if request.url.path == STREAM:
            if "Last-Event-ID" not in request.headers:
                return sse(event(1, "execution_start"), event(2, "suspend"))
            assert request.headers["Last-Event-ID"] == "2"
            return sse(event(3, "resume"), event(4, "execution_finish", status="completed"))
        return httpx.Response(200, json={"status": "queued"})  # the stream checks: not over

    events = list(scripted(handler).events.stream_workflow("flow", EXECUTION))

    assert [e.sequence_id for e in events] == [1, 2, 3, 4]
    assert events[-1].data == {"status": "completed"}
    assert calls[0].url.params["workflow_id"] == "flow"


def test_a_stream_reconnects_after_network_errors_and_server_errors():
    answers = iter(
        [
            httpx.ConnectError("refused"),
            httpx.Response(503, json={"detail": "restarting", "code": "unavailable"}),
            sse(event(5, "execution_finish", status="failed")),
        ]
    )

    def handler(request):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    events = list(scripted(handler).events.stream_workflow("flow", EXECUTION, 4))

    assert [e.sequence_id for e in events] == [5]


def test_a_stream_whose_execution_already_ended_stops():
    def handler(request):
        if request.url.path == STREAM:
            return sse()  # nothing after Last-Event-ID, and the server closed
        return httpx.Response(200, json={"status": "completed"})

    assert list(scripted(handler).events.stream_workflow("flow", EXECUTION, 9)) == []


def test_a_stream_of_an_unknown_execution_raises_not_found():
    polos = scripted(
        lambda request: httpx.Response(
            404, json={"detail": "no execution", "code": "execution_not_found"}
        )
    )

    with pytest.raises(NotFound):
        list(polos.events.stream_workflow("flow", EXECUTION))


@pytest.mark.parametrize(
    ("execution", "expected"),
    [
        ({"status": "failed", "error": {"message": "card declined"}}, ExecutionFailed),
        ({"status": "cancelled"}, ExecutionCancelled),
    ],
)
def test_result_raises_for_a_failed_or_cancelled_execution(execution, expected):
    polos = scripted(lambda request: httpx.Response(200, json=execution))

    with pytest.raises(expected):
        polos.execution("flow", EXECUTION).result(timeout=5)


def test_result_waits_on_the_stream_then_answers_the_result():
    state = {"status": "waiting"}

    def handler(request):
        if request.url.path == STREAM:
            state["status"] = "completed"
            return sse(event(7, "execution_finish", status="completed"))
        return httpx.Response(200, json={**state, "result": {"ok": True}})

    assert scripted(handler).execution("flow", EXECUTION).result(timeout=5) == {"ok": True}


def test_the_client_imports_without_django():
    code = (
        "import sys; import workflows.client; "
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}
    )

    assert result.returncode == 0, result.stderr
