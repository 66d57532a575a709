"""An in-memory Store: the engine's reference implementation, used by unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from .exceptions import ExecutionCancelled
from .store import StepKind, StepRecord, SuspendRequest


@dataclass
class MemoryExecution:
    status: str = "running"
    steps: dict[str, StepRecord] = field(default_factory=dict)
    suspensions: dict[str, SuspendRequest] = field(default_factory=dict)
    suspension_status: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    error: dict[str, Any] | None = None


class MemoryStore:
    def __init__(self) -> None:
        self.executions: dict[UUID, MemoryExecution] = {}
        self.transactions = 0
        self._sequence = 0

    def execution(self, execution_id: UUID) -> MemoryExecution:
        return self.executions.setdefault(execution_id, MemoryExecution())

    def _begin(self, execution_id: UUID, steps: list[StepRecord]) -> MemoryExecution:
        execution = self.execution(execution_id)
        if execution.status != "running":
            raise ExecutionCancelled()
        self.transactions += 1
        for step in steps:
            execution.steps[step.step_key] = step
        return execution

    def _event(self, execution: MemoryExecution, topic: str, event_type: str, data: Any) -> dict:
        self._sequence += 1
        event = {
            "sequence_id": self._sequence,
            "topic": topic,
            "event_type": event_type,
            "data": data,
            "created_at": datetime.now(UTC).isoformat(),
        }
        execution.events.append(event)
        return event

    def flush(self, execution_id: UUID, steps: list[StepRecord]) -> None:
        self._begin(execution_id, steps)

    def suspend(
        self, execution_id: UUID, steps: list[StepRecord], request: SuspendRequest
    ) -> StepRecord | None:
        execution = self._begin(execution_id, steps)
        execution.suspensions[request.step_key] = request
        execution.suspension_status[request.step_key] = "pending"
        execution.status = "waiting"
        self._event(
            execution, f"{request.step_key}/{execution_id}", "suspend", {"data": request.data}
        )
        return None

    def complete(self, execution_id: UUID, steps: list[StepRecord], result: Any) -> None:
        execution = self._begin(execution_id, steps)
        execution.status, execution.result = "completed", result

    def fail(self, execution_id: UUID, steps: list[StepRecord], error: dict[str, Any]) -> None:
        execution = self._begin(execution_id, steps)
        execution.status, execution.error = "failed", error

    # -- what the services do, for tests ----------------------------------------------------

    def resume(
        self, execution_id: UUID, step_key: str, data: Any, decided_by: str | None = None
    ) -> None:
        execution = self.execution(execution_id)
        assert execution.suspension_status.get(step_key) == "pending", "not pending"
        event = self._event(execution, f"{step_key}/{execution_id}", "resume", data)
        execution.suspension_status[step_key] = "resumed"
        kind: StepKind = (
            "suspend" if execution.suspensions[step_key].kind == "approval" else "sleep"
        )
        execution.steps[step_key] = StepRecord(
            step_key,
            kind,
            "completed",
            event | {"decided_by": decided_by},
        )
        execution.status = "running"

    def time_out(self, execution_id: UUID, step_key: str) -> None:
        execution = self.execution(execution_id)
        request = execution.suspensions[step_key]
        execution.suspension_status[step_key] = "timed_out"
        event = self._event(execution, f"{step_key}/{execution_id}", "timeout", request.default)
        kind: StepKind = "suspend" if request.kind == "approval" else "sleep"
        if request.has_default:
            record = StepRecord(step_key, kind, "completed", event | {"decided_by": None})
        else:
            record = StepRecord(
                step_key,
                kind,
                "failed",
                error={"type": "SuspendTimeout", "message": f"{step_key!r} timed out"},
            )
        execution.steps[step_key] = record
        execution.status = "running"
