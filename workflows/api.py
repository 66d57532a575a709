"""The HTTP API of the engine (``/api/v1``): handlers translate HTTP to services and selectors.

Errors are raised as the services' typed errors; ``polos_site.api`` maps them to statuses and
the one error shape, ``{"detail", "code"}``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from uuid import UUID

from asgiref.sync import sync_to_async
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Header, Query, Router
from ninja.errors import HttpError
from ninja.responses import Status

from approvals.permissions import (
    decidable_by,
    may_watch_execution,
    may_watch_topic,
    watchable_by,
)
from workflows import selectors, services, sse
from workflows.auth import API_AUTH
from workflows.engine.registry import registry
from workflows.errors import ExecutionNotFound
from workflows.models import Execution, Suspension, WorkflowDefinition
from workflows.schemas import (
    ApprovalListOut,
    ErrorOut,
    EventListOut,
    ExecutionListOut,
    ExecutionOut,
    ExecutionStatus,
    ExecutionSummaryOut,
    NotPendingOut,
    PublishIn,
    PublishOut,
    ResumeIn,
    ResumeOut,
    RunIn,
    RunOut,
    ValidationErrorOut,
    WorkflowOut,
)
from workflows.store import approval_url

router = Router(auth=API_AUTH)

# Documented answers; the bodies come from the exception handlers in ``polos_site.api``.
UNAUTHORIZED: dict[int, Any] = {401: ErrorOut}
DECISION_ERRORS: dict[int, Any] = {
    **UNAUTHORIZED,
    403: ErrorOut,
    404: ErrorOut,
    409: NotPendingOut,
    422: ValidationErrorOut,
}
EVENT_STREAM_DOC = {
    "responses": {
        200: {
            "description": "Server-Sent Events: `id:` the sequence id, `event:` the event type, "
            "`data:` the event as JSON; `: keepalive` comments every 15 s.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}
# Query strings reach the database as text: PostgreSQL refuses NUL characters in text.
NO_NUL = r"^[^\x00]*$"


def _execution_uuid(raw: str) -> UUID:
    """A path's execution id; one that is not a UUID names no execution (404)."""
    try:
        return UUID(raw)
    except ValueError:
        raise ExecutionNotFound(raw) from None


def _watched_execution(request: HttpRequest, execution_id: UUID) -> Execution:
    """The execution, if the caller may see it; one it may not see is a 404, as if absent."""
    execution = selectors.execution_get(execution_id=execution_id)
    if not may_watch_execution(request.auth, execution):  # type: ignore[attr-defined]
        raise ExecutionNotFound(execution_id)
    return execution


def _client_ip(request: HttpRequest) -> str | None:
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _summary(execution: Execution) -> dict[str, Any]:
    return {
        "execution_id": execution.pk,
        "workflow_id": execution.workflow_id,
        "status": execution.status,
        "created_at": execution.created_at,
        "updated_at": execution.updated_at,
        "finished_at": execution.finished_at,
    }


# -- workflows ------------------------------------------------------------------------------------


@router.get("/workflows", response={200: list[WorkflowOut], **UNAUTHORIZED}, tags=["workflows"])
def workflow_list(request: HttpRequest) -> list[dict[str, Any]]:
    """The registered workflows and their admin configuration."""
    specs = registry.all()
    definitions = {
        definition.workflow_id: definition
        for definition in WorkflowDefinition.objects.filter(
            workflow_id__in=[spec.id for spec in specs]
        )
    }
    answer = []
    for spec in specs:
        definition = definitions.get(spec.id)
        answer.append(
            {
                "workflow_id": spec.id,
                "version": spec.version,
                "description": spec.description,
                "enabled": definition.enabled if definition else True,
                "default_timeout": definition.default_timeout if definition else None,
                "forbid_self_approval": definition.forbid_self_approval if definition else False,
                "payload_schema": spec.payload_schema,
            }
        )
    return answer


@router.post(
    "/workflows/{workflow_id}/run",
    response={
        200: RunOut,
        201: RunOut,
        **UNAUTHORIZED,
        404: ErrorOut,
        409: ErrorOut,
        422: ValidationErrorOut,
    },
    tags=["workflows"],
)
def workflow_run(
    request: HttpRequest,
    workflow_id: str,
    body: RunIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
) -> Status[dict[str, Any]]:
    """Start an execution: 201. With an ``Idempotency-Key`` already used for the same payload,
    200 and that execution; for another payload, 409."""
    execution, created = services.execution_start(
        workflow_id=workflow_id,
        payload=body.payload,
        idempotency_key=idempotency_key or None,
        user=request.auth,  # type: ignore[attr-defined]
    )
    answer = {
        "execution_id": execution.pk,
        "workflow_id": execution.workflow_id,
        "status": execution.status,
    }
    return Status(201 if created else 200, answer)


# -- executions -----------------------------------------------------------------------------------


@router.get("/executions", response={200: ExecutionListOut, **UNAUTHORIZED}, tags=["executions"])
def execution_list(
    request: HttpRequest,
    workflow_id: str | None = Query(None, max_length=200, pattern=NO_NUL),
    status: ExecutionStatus | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """Executions, newest first."""
    executions = watchable_by(
        request.auth,  # type: ignore[attr-defined]
        selectors.execution_list(workflow_id=workflow_id, status=status),
    )
    page = executions.only(
        "id", "workflow_id", "status", "created_at", "updated_at", "finished_at"
    )[offset : offset + limit]
    return {"items": [_summary(e) for e in page], "count": executions.count()}


@router.get(
    "/executions/{execution_id}",
    response={200: ExecutionOut, **UNAUTHORIZED, 404: ErrorOut},
    tags=["executions"],
)
def execution_detail(request: HttpRequest, execution_id: str) -> dict[str, Any]:
    """One execution with its steps and suspensions."""
    execution = _watched_execution(request, _execution_uuid(execution_id))
    return selectors.execution_as_dict(execution)


def _resume(request: HttpRequest, execution_id: UUID, body: ResumeIn) -> Status[dict[str, Any]]:
    services.suspension_resolve(
        execution_id=execution_id,
        step_key=body.step_key,
        data=body.data,
        user=request.auth,  # type: ignore[attr-defined]
        ip_address=_client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return Status(
        202, {"execution_id": execution_id, "step_key": body.step_key, "status": "resumed"}
    )


@router.post(
    "/executions/{execution_id}/resume",
    response={202: ResumeOut, **DECISION_ERRORS},
    tags=["decisions"],
)
def execution_resume(
    request: HttpRequest, execution_id: str, body: ResumeIn
) -> Status[dict[str, Any]]:
    """Decide the execution's pending suspension ``step_key`` with ``data``."""
    return _resume(request, _execution_uuid(execution_id), body)


@router.post(
    "/workflows/{workflow_id}/executions/{execution_id}/resume",
    response={202: ResumeOut, **DECISION_ERRORS},
    tags=["decisions"],
)
def workflow_execution_resume(
    request: HttpRequest, workflow_id: str, execution_id: str, body: ResumeIn
) -> Status[dict[str, Any]]:
    """The same decision, addressed as Polos does; an execution of another workflow is a 404."""
    uuid = _execution_uuid(execution_id)
    if selectors.execution_get(execution_id=uuid).workflow_id != workflow_id:
        raise ExecutionNotFound(uuid)
    return _resume(request, uuid, body)


@router.post(
    "/executions/{execution_id}/cancel",
    response={200: ExecutionSummaryOut, **UNAUTHORIZED, 404: ErrorOut, 409: ErrorOut},
    tags=["executions"],
)
def execution_cancel(request: HttpRequest, execution_id: str) -> dict[str, Any]:
    """Cancel a queued, running or waiting execution; 409 once it has finished."""
    execution = services.execution_cancel(
        execution_id=_watched_execution(request, _execution_uuid(execution_id)).pk,
        user=request.auth,  # type: ignore[attr-defined]
    )
    return _summary(execution)


# -- events ---------------------------------------------------------------------------------------


@router.get("/events", response={200: EventListOut, **UNAUTHORIZED}, tags=["events"])
def event_list(
    request: HttpRequest,
    topic: str | None = Query(None, max_length=450, pattern=NO_NUL),
    execution_id: UUID | None = None,
    after: int | None = Query(None, ge=0, description="Only events after this sequence id."),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The event log in ``sequence_id`` order (of the executions the caller may see)."""
    user = request.auth  # type: ignore[attr-defined]
    events, has_more = selectors.event_list(
        topic=topic,
        execution_id=execution_id,
        after=after,
        limit=limit,
        executions=None
        if user.is_staff or user.is_superuser
        else watchable_by(user, Execution.objects.all()),
    )
    return {"events": [event.as_dict() for event in events], "has_more": has_more}


@router.post(
    "/events",
    response={201: PublishOut, **DECISION_ERRORS},
    tags=["events"],
)
def event_publish(request: HttpRequest, body: PublishIn) -> Status[dict[str, Any]]:
    """Publish an event. A ``resume`` on ``{step_key}/{execution_id}`` is a decision, with the
    resume endpoint's answers; other types are stored and streamed."""
    event = services.event_publish(
        topic=body.topic,
        event_type=body.event_type,
        data=body.data,
        user=request.auth,  # type: ignore[attr-defined]
        ip_address=_client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return Status(201, {"sequence_id": event.sequence_id})


def _stream_start(after: int | None, last_event_id: str | None) -> int:
    """Where a stream starts: after ``Last-Event-ID`` (a reconnection) or ``after``."""
    if last_event_id:
        try:
            return max(int(last_event_id), 0)
        except ValueError:
            raise HttpError(400, "Last-Event-ID must be a sequence id (an integer)") from None
    return after or 0


@router.get(
    "/executions/{execution_id}/events/stream",
    response={**UNAUTHORIZED, 404: ErrorOut},
    openapi_extra=EVENT_STREAM_DOC,
    tags=["events"],
)
async def execution_event_stream(
    request: HttpRequest,
    execution_id: str,
    workflow_id: str | None = Query(None, description="When given, must be the execution's."),
    after: int | None = Query(None, ge=0),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingHttpResponse:
    """The execution's events from the start (or after ``after`` / ``Last-Event-ID``), then
    live; the stream ends after the execution's ``execution_finish`` event."""
    uuid = _execution_uuid(execution_id)
    execution = await sync_to_async(_watched_execution)(request, uuid)
    if workflow_id is not None and execution.workflow_id != workflow_id:
        raise ExecutionNotFound(uuid)
    start = _stream_start(after, last_event_id)
    return sse.event_stream_response(sse.event_stream(execution_id=uuid, after=start))


@router.get(
    "/events/stream",
    response={**UNAUTHORIZED, 422: ValidationErrorOut},
    openapi_extra=EVENT_STREAM_DOC,
    tags=["events"],
)
async def topic_event_stream(
    request: HttpRequest,
    topic: str = Query(..., min_length=1, max_length=450, pattern=NO_NUL),
    after: int | None = Query(None, ge=0),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingHttpResponse:
    """One topic's events from the start (or after ``after`` / ``Last-Event-ID``), then live.
    A lifecycle topic (``workflow/{workflow_id}/{execution_id}``) ends after the finish."""
    if not await sync_to_async(may_watch_topic)(request.auth, topic):  # type: ignore[attr-defined]
        raise HttpError(403, "you may not read this topic")
    start = _stream_start(after, last_event_id)
    return sse.event_stream_response(sse.event_stream(topic=topic, after=start))


# -- approvals ------------------------------------------------------------------------------------


@router.get("/approvals", response={200: ApprovalListOut, **UNAUTHORIZED}, tags=["decisions"])
def approval_list(
    request: HttpRequest,
    status: Literal["pending"] = "pending",
    workflow_id: str | None = Query(None, max_length=200, pattern=NO_NUL),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """Pending approvals the caller may decide, soonest deadline first.

    No total count: it would scan every pending row; ``has_more`` says whether a next page
    exists.
    """
    user = request.auth  # type: ignore[attr-defined]
    pending = decidable_by(user, selectors.suspension_list_pending(workflow_id=workflow_id))
    rows: list[Suspension] = list(pending[offset : offset + limit + 1])
    items = [
        {
            "execution_id": s.execution_id,
            "workflow_id": s.workflow_id,
            "step_key": s.step_key,
            "topic": s.topic,
            "data": s.data,
            "expires_at": s.expires_at,
            "created_at": s.created_at,
            "approval_url": approval_url(s.execution_id),
        }
        for s in rows[:limit]
    ]
    return {"items": items, "has_more": len(rows) > limit, "limit": limit, "offset": offset}
