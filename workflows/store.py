"""The engine's Store on the ORM: each method is one short transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workflows import events as ev
from workflows.engine.exceptions import ExecutionCancelled
from workflows.engine.store import StepRecord, SuspendRequest
from workflows.models import Event, Execution, StepOutput, Suspension, WorkflowDefinition


def approval_url(execution_id: UUID | str) -> str:
    return f"{settings.POLOS_BASE_URL}/approve/{execution_id}/"


def step_record(row: StepOutput) -> StepRecord:
    return StepRecord(
        step_key=row.step_key,
        kind=row.kind,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        output=row.output,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def steps_load(execution_id: UUID) -> dict[str, StepRecord]:
    """Every recorded step of an execution, in one query whatever their number."""
    rows = StepOutput.objects.filter(execution_id=execution_id).only(
        "step_key", "kind", "status", "output", "error", "started_at", "finished_at"
    )
    return {row.step_key: step_record(row) for row in rows}


class DjangoStore:
    def __init__(self, *, execution_id: UUID, workflow_id: str) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id

    # Each transition first moves the execution out of (or keeps it in) RUNNING with a
    # conditional UPDATE: zero rows means it was cancelled meanwhile, and nothing is written.
    def _transition(self, **changes: Any) -> None:
        changes.setdefault("updated_at", timezone.now())
        updated = Execution.objects.filter(
            pk=self.execution_id, status=Execution.Status.RUNNING
        ).update(**changes)
        if not updated:
            raise ExecutionCancelled()

    def _write_steps(self, steps: list[StepRecord], events: list[Event]) -> None:
        if not steps:
            return
        StepOutput.objects.bulk_create(
            StepOutput(
                execution_id=self.execution_id,
                step_key=step.step_key,
                kind=step.kind,
                status=step.status,
                output=step.output,
                error=step.error,
                started_at=step.started_at,
                finished_at=step.finished_at,
            )
            for step in steps
        )
        topic = ev.lifecycle_topic(self.workflow_id, self.execution_id)
        for step in steps:
            if step.kind != "run":
                continue  # uuid/now/random are bookkeeping, not progress worth an event
            data: dict[str, Any] = {"status": step.status}
            if step.error:
                data["error"] = {
                    "type": step.error.get("type"),
                    "message": step.error.get("message"),
                }
            events.append(self._event(topic, ev.STEP_FINISH, data, step_key=step.step_key))

    def _event(self, topic: str, event_type: str, data: Any, *, step_key: str = "") -> Event:
        return Event(
            topic=topic,
            event_type=event_type,
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            step_key=step_key,
            data=data,
            created_at=timezone.now(),
        )

    def flush(self, execution_id: UUID, steps: list[StepRecord]) -> None:
        events: list[Event] = []
        with transaction.atomic():
            self._transition()
            self._write_steps(steps, events)
            if events:
                ev.events_append(events)

    def suspend(
        self, execution_id: UUID, steps: list[StepRecord], request: SuspendRequest
    ) -> StepRecord | None:
        from approvals.notifications import notifications_schedule
        from workflows.timers import suspension_timer_schedule

        now = timezone.now()
        expires_at = request.expires_at
        if expires_at is None and request.kind == Suspension.Kind.APPROVAL:
            default_timeout = (
                WorkflowDefinition.objects.filter(workflow_id=self.workflow_id)
                .values_list("default_timeout", flat=True)
                .first()
            )
            if default_timeout:
                expires_at = now + timedelta(seconds=default_timeout)
        events: list[Event] = []
        with transaction.atomic():
            self._transition(status=Execution.Status.WAITING, updated_at=now)
            self._write_steps(steps, events)
            suspension = Suspension.objects.create(
                execution_id=self.execution_id,
                workflow_id=self.workflow_id,
                step_key=request.step_key,
                kind=request.kind,
                data=request.data,
                decision_schema=request.decision_schema,
                schema_ref=request.schema_ref,
                has_default=request.has_default,
                default=request.default,
                expires_at=expires_at,
                created_at=now,
            )
            if request.kind == Suspension.Kind.APPROVAL:
                events.append(
                    self._event(
                        ev.step_topic(request.step_key, self.execution_id),
                        ev.SUSPEND,
                        {
                            "workflow_id": self.workflow_id,
                            "execution_id": str(self.execution_id),
                            "step_key": request.step_key,
                            "data": request.data,
                            "expires_at": expires_at.isoformat() if expires_at else None,
                            "approval_url": approval_url(self.execution_id),
                        },
                        step_key=request.step_key,
                    )
                )
                notifications_schedule(suspension_id=suspension.pk, workflow_id=self.workflow_id)
            if events:
                ev.events_append(events)
            if expires_at is not None:
                suspension_timer_schedule(suspension_id=suspension.pk, expires_at=expires_at)
        return None

    def _finish(self, steps: list[StepRecord], status: str, **changes: Any) -> None:
        now = timezone.now()
        events: list[Event] = []
        with transaction.atomic():
            self._transition(status=status, finished_at=now, updated_at=now, **changes)
            self._write_steps(steps, events)
            data: dict[str, Any] = {"status": status}
            if "error" in changes:
                data["error"] = {
                    "type": changes["error"].get("type"),
                    "message": changes["error"].get("message"),
                }
            events.append(
                self._event(
                    ev.lifecycle_topic(self.workflow_id, self.execution_id),
                    ev.EXECUTION_FINISH,
                    data,
                )
            )
            ev.events_append(events)

    def complete(self, execution_id: UUID, steps: list[StepRecord], result: Any) -> None:
        self._finish(steps, Execution.Status.COMPLETED, result=result)

    def fail(self, execution_id: UUID, steps: list[StepRecord], error: dict[str, Any]) -> None:
        self._finish(steps, Execution.Status.FAILED, error=error)
