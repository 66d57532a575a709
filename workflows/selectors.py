"""Reads of the engine's state."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import F, QuerySet

from workflows.errors import ExecutionNotFound
from workflows.models import Event, Execution, StepOutput, Suspension


def execution_get(*, execution_id: UUID) -> Execution:
    execution = Execution.objects.select_related("started_by").filter(pk=execution_id).first()
    if execution is None:
        raise ExecutionNotFound(execution_id)
    return execution


def execution_list(
    *, workflow_id: str | None = None, status: str | None = None
) -> QuerySet[Execution]:
    executions = Execution.objects.all().order_by("-created_at")
    if workflow_id:
        executions = executions.filter(workflow_id=workflow_id)
    if status:
        executions = executions.filter(status=status)
    return executions


def execution_steps(*, execution_id: UUID) -> list[StepOutput]:
    return list(StepOutput.objects.filter(execution_id=execution_id).order_by("id"))


def execution_suspensions(*, execution_id: UUID) -> list[Suspension]:
    return list(
        Suspension.objects.filter(execution_id=execution_id)
        .select_related("decided_by")
        .order_by("created_at", "id")
    )


def suspension_list_pending(*, workflow_id: str | None = None) -> QuerySet[Suspension]:
    """Pending approvals, soonest deadline first (no deadline last), oldest first within."""
    pending = Suspension.objects.filter(
        status=Suspension.Status.PENDING, kind=Suspension.Kind.APPROVAL
    ).order_by(F("expires_at").asc(nulls_last=True), "created_at")
    if workflow_id:
        pending = pending.filter(workflow_id=workflow_id)
    return pending


def event_list(
    *,
    topic: str | None = None,
    execution_id: UUID | None = None,
    after: int | None = None,
    limit: int = 100,
    executions: QuerySet[Execution] | None = None,
) -> tuple[list[Event], bool]:
    """Events in ``sequence_id`` order after ``after``; and whether more follow. With
    ``executions``, only the events of those executions."""
    events = Event.objects.all().order_by("sequence_id")
    if executions is not None:
        events = events.filter(execution__in=executions)
    if topic:
        events = events.filter(topic=topic)
    if execution_id:
        events = events.filter(execution_id=execution_id)
    if after is not None:
        events = events.filter(sequence_id__gt=after)
    rows = list(events[: limit + 1])
    return rows[:limit], len(rows) > limit


def execution_as_dict(execution: Execution) -> dict[str, Any]:
    """The API's and the console's full view of one execution."""
    return {
        "execution_id": str(execution.pk),
        "workflow_id": execution.workflow_id,
        "status": execution.status,
        "payload": execution.payload,
        "result": execution.result,
        "error": execution.error,
        "created_at": execution.created_at,
        "updated_at": execution.updated_at,
        "steps": [
            {
                "step_key": step.step_key,
                "kind": step.kind,
                "status": step.status,
                "output": step.output,
                "error": step.error,
                "started_at": step.started_at,
                "finished_at": step.finished_at,
            }
            for step in execution_steps(execution_id=execution.pk)
        ],
        "suspensions": [
            {
                "step_key": s.step_key,
                "kind": s.kind,
                "status": s.status,
                "data": s.data,
                "expires_at": s.expires_at,
                "created_at": s.created_at,
                "decided_at": s.decided_at,
                "decided_by": s.decided_by.get_username() if s.decided_by else None,
                "decision": s.decision,
                "default_applied": s.status == Suspension.Status.TIMED_OUT and s.has_default,
            }
            for s in execution_suspensions(execution_id=execution.pk)
        ],
    }
