"""A Python client for the Polos HTTP API; needs only httpx and httpx-sse (no Django).

    from workflows.client import PolosClient

    with PolosClient("http://127.0.0.1:8000", api_key) as polos:
        handle = polos.run("charge-customer", {"customer_id": "c1", "amount": 2500})
        for event in polos.events.stream_workflow("charge-customer", handle.id):
            if event.event_type == "suspend":
                polos.resume("charge-customer", handle.id, event.step_key, {"approved": True})
        print(handle.result(timeout=60))

Failures raise ``PolosError`` subclasses carrying the HTTP status, ``detail`` and ``code``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, connect_sse

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "Conflict",
    "Event",
    "ExecutionCancelled",
    "ExecutionFailed",
    "ExecutionHandle",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolosClient",
    "PolosError",
    "ServerError",
    "ValidationFailed",
    "WaitTimeout",
]

API_PREFIX = "/api/v1"
EXECUTION_FINISH = "execution_finish"
FINISHED = frozenset({"completed", "failed", "cancelled"})
# The server sends a heartbeat every 15 s: a silent connection this long is a dead one.
STREAM_READ_TIMEOUT = 40.0
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


# -- errors -------------------------------------------------------------------------------------


class PolosError(Exception):
    """An error answer of the API (``status`` None when the failure is not an HTTP answer)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {detail}" if status else detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.body = body


class BadRequest(PolosError):
    """400: a malformed request."""


class AuthenticationFailed(PolosError):
    """401: no key, or a wrong or revoked one."""


class PermissionDenied(PolosError):
    """403: the key's user may not do this (e.g. decide this approval)."""


class NotFound(PolosError):
    """404: no such workflow, execution or suspension."""


class Conflict(PolosError):
    """409: the state forbids it: already decided, already finished, workflow disabled, an
    idempotency key reused with another payload. ``body`` has the details."""


class PayloadTooLarge(PolosError):
    """413: the request body is over the server's limit."""


class ValidationFailed(PolosError):
    """422: the payload or decision does not fit its schema; ``errors`` lists the fields."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("errors", [])) if isinstance(self.body, dict) else []


class ServerError(PolosError):
    """5xx."""


class ExecutionFailed(PolosError):
    """The execution ended in failure; ``error`` is what the engine recorded."""

    def __init__(self, execution_id: str, error: Any) -> None:
        message = error.get("message") if isinstance(error, dict) else None
        super().__init__(f"execution {execution_id} failed: {message or error}", code="failed")
        self.execution_id = execution_id
        self.error = error


class ExecutionCancelled(PolosError):
    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id} was cancelled", code="cancelled")
        self.execution_id = execution_id


class WaitTimeout(PolosError, TimeoutError):
    """The execution did not finish within the given timeout (it goes on running)."""


_ERRORS_BY_STATUS: dict[int, type[PolosError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
}


def _error_for(response: httpx.Response) -> PolosError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail, code = str(body["detail"]), body.get("code")
    else:
        detail, code = (response.text or response.reason_phrase)[:500], None
    status = response.status_code
    kind = _ERRORS_BY_STATUS.get(status, ServerError if status >= 500 else PolosError)
    return kind(detail, status=status, code=code, body=body)


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    sequence_id: int
    topic: str
    event_type: str
    execution_id: str | None
    workflow_id: str
    step_key: str
    data: Any
    created_at: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(
            sequence_id=int(raw["sequence_id"]),
            topic=raw["topic"],
            event_type=raw["event_type"],
            execution_id=raw.get("execution_id"),
            workflow_id=raw.get("workflow_id", ""),
            step_key=raw.get("step_key", ""),
            data=raw.get("data"),
            created_at=raw.get("created_at", ""),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            "topic": self.topic,
            "event_type": self.event_type,
            "execution_id": self.execution_id,
            "workflow_id": self.workflow_id,
            "step_key": self.step_key,
            "data": self.data,
            "created_at": self.created_at,
        }


class Events:
    """``client.events``: the event log, publishing, and live streams."""

    def __init__(self, client: PolosClient) -> None:
        self._client = client

    def list(
        self,
        *,
        topic: str | None = None,
        execution_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> tuple[list[Event], bool]:
        """One page of the log in ``sequence_id`` order, and whether more follow."""
        params = {"topic": topic, "execution_id": execution_id, "after": after, "limit": limit}
        body = self._client._request("GET", "events", params=_present(params))
        return [Event.from_dict(raw) for raw in body["events"]], bool(body["has_more"])

    def publish(self, topic: str, event_type: str, data: Any = None) -> int:
        """Publish an event; returns its sequence id. A ``resume`` on
        ``{step_key}/{execution_id}`` decides that approval (errors as ``resume``)."""
        body = self._client._request(
            "POST",
            "events",
            json={"topic": topic, "event_type": event_type, "data": {} if data is None else data},
        )
        return int(body["sequence_id"])

    def stream_workflow(
        self,
        workflow_id: str,
        execution_id: str,
        last_sequence_id: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """The execution's events from the start (or after ``last_sequence_id``), then live;
        stops after its ``execution_finish`` event. Reconnects by itself, with
        ``Last-Event-ID``, so nothing is missed or repeated. ``timeout``: WaitTimeout when the
        execution has not finished by then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._stream(
            f"executions/{_segment(execution_id)}/events/stream",
            {"workflow_id": workflow_id},
            last_sequence_id,
            execution_id=str(execution_id),
            deadline=deadline,
        )

    def stream_topic(self, topic: str, last_sequence_id: int | None = None) -> Iterator[Event]:
        """One topic's events from the start (or after ``last_sequence_id``), then live, until
        the caller stops iterating (or an ``execution_finish`` on a lifecycle topic)."""
        return self._stream("events/stream", {"topic": topic}, last_sequence_id)

    def _stream(
        self,
        path: str,
        params: dict[str, Any],
        last_sequence_id: int | None,
        *,
        execution_id: str | None = None,
        deadline: float | None = None,
    ) -> Iterator[Event]:
        last = last_sequence_id
        failures = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"execution {execution_id} did not finish in time")
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            read_timeout = STREAM_READ_TIMEOUT
            if deadline is not None:
                read_timeout = max(0.05, min(read_timeout, deadline - time.monotonic()))
            try:
                with connect_sse(
                    self._client._http,
                    "GET",
                    path,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(self._client.timeout, read=read_timeout),
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        response.read()
                        raise _error_for(response)
                    failures = 0
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue  # a "retry:" only block
                        event = Event.from_dict(json.loads(sse.data))
                        # Not always the latest: the server sends a late commit when it sees it.
                        last = max(last or 0, event.sequence_id)
                        yield event
                        if event.event_type == EXECUTION_FINISH and (
                            execution_id is None or event.execution_id == execution_id
                        ):
                            return
                # The server closed the stream: it had ended before our position, or the
                # connection reached its maximum age.
                if execution_id is not None and self._client._finished(execution_id):
                    return
            except ServerError:
                failures += 1
            except (httpx.TransportError, SSEError):
                failures += 1
            if failures:
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS)) - 1]
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - time.monotonic()))
                time.sleep(delay)


# -- executions ---------------------------------------------------------------------------------


@dataclass
class ExecutionHandle:
    """A started execution: ``.id``, ``.get()``, ``.result(timeout)``."""

    client: PolosClient = field(repr=False)
    id: str
    workflow_id: str
    status: str
    created: bool = True

    def get(self) -> dict[str, Any]:
        """The execution now, with its steps and suspensions."""
        execution = self.client.get_execution(self.id)
        self.status = execution["status"]
        return execution

    def events(self, last_sequence_id: int | None = None) -> Iterator[Event]:
        return self.client.events.stream_workflow(self.workflow_id, self.id, last_sequence_id)

    def resume(self, step_key: str, data: Any = None) -> dict[str, Any]:
        return self.client.resume(self.workflow_id, self.id, step_key, data)

    def cancel(self) -> dict[str, Any]:
        return self.client.cancel_execution(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the execution ends; its result, or ExecutionFailed / ExecutionCancelled
        (WaitTimeout after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            execution = self.get()
            if execution["status"] in FINISHED:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            for _event in self.client.events.stream_workflow(
                self.workflow_id, self.id, timeout=remaining
            ):
                pass
        if execution["status"] == "completed":
            return execution["result"]
        if execution["status"] == "failed":
            raise ExecutionFailed(self.id, execution["error"])
        raise ExecutionCancelled(self.id)


def _segment(value: Any) -> str:
    return quote(str(value), safe="")


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}


class PolosClient:
    """The HTTP API as Python calls. ``base_url``: the server (``http://host:port``), with or
    without ``/api/v1``. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if not root.endswith(API_PREFIX):
            root += API_PREFIX
        self.base_url = root + "/"
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "polos-django-client"},
            timeout=timeout,
            transport=transport,
        )
        self.events = Events(self)

    def __enter__(self) -> PolosClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = self._http.request(method, path, json=json, params=params, headers=headers)
        if response.status_code >= 400:
            raise _error_for(response)
        return response.json()

    def _finished(self, execution_id: str) -> bool:
        return self.get_execution(execution_id)["status"] in FINISHED

    def list_workflows(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "workflows"))

    def run(
        self, workflow_id: str, payload: Any = None, idempotency_key: str | None = None
    ) -> ExecutionHandle:
        """Start ``workflow_id``. With an ``idempotency_key`` already used for the same
        payload, the handle is the first execution's (``created`` False)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._http.post(
            f"workflows/{_segment(workflow_id)}/run",
            json={"payload": {} if payload is None else payload},
            headers=headers,
        )
        if response.status_code >= 400:
            raise _error_for(response)
        body = response.json()
        return ExecutionHandle(
            client=self,
            id=body["execution_id"],
            workflow_id=body["workflow_id"],
            status=body["status"],
            created=response.status_code == 201,
        )

    def execution(self, workflow_id: str, execution_id: str) -> ExecutionHandle:
        """A handle on an existing execution."""
        return ExecutionHandle(
            client=self, id=str(execution_id), workflow_id=workflow_id, status=""
        )

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"executions/{_segment(execution_id)}"))

    def list_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        params = {"workflow_id": workflow_id, "status": status, "limit": limit, "offset": offset}
        return dict(self._request("GET", "executions", params=_present(params)))

    def resume(
        self, workflow_id: str, execution_id: str, step_key: str, data: Any = None
    ) -> dict[str, Any]:
        """Decide the pending suspension ``step_key`` of the execution with ``data``."""
        return dict(
            self._request(
                "POST",
                f"workflows/{_segment(workflow_id)}/executions/{_segment(execution_id)}/resume",
                json={"step_key": step_key, "data": {} if data is None else data},
            )
        )

    def cancel_execution(self, execution_id: str) -> dict[str, Any]:
        return dict(self._request("POST", f"executions/{_segment(execution_id)}/cancel"))

    def list_approvals(
        self, *, workflow_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        """Pending approvals this key's user may decide, soonest deadline first."""
        params = {"workflow_id": workflow_id, "limit": limit, "offset": offset}
        return dict(self._request("GET", "approvals", params=_present(params)))
