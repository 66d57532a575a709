"""The Store protocol: how the engine persists what happened. Implemented on the ORM in
``workflows/store.py`` and in memory for unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

StepKind = Literal["run", "suspend", "sleep", "uuid", "now", "random"]
StepStatus = Literal["completed", "failed"]


@dataclass(frozen=True)
class StepRecord:
    """One finished step, as recorded and replayed."""

    step_key: str
    kind: StepKind
    status: StepStatus
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class SuspendRequest:
    """A suspension to register. ``kind`` "approval" waits for a decision; "sleep" is a timer."""

    step_key: str
    kind: Literal["approval", "sleep"]
    data: dict[str, Any]
    expires_at: datetime | None
    has_default: bool = False
    default: Any = None
    decision_schema: dict[str, Any] | None = None
    schema_ref: str = ""
    created_at: datetime | None = field(default=None)


class Store(Protocol):
    """Each method is one short transaction. All of them take the finished steps not yet
    persisted (``steps``) and write them in the same transaction, and raise
    ``ExecutionCancelled`` when the execution is no longer running (cancelled meanwhile)."""

    def flush(self, execution_id: UUID, steps: list[StepRecord]) -> None:
        """Persist finished steps before the next step's side effects start."""

    def suspend(
        self, execution_id: UUID, steps: list[StepRecord], request: SuspendRequest
    ) -> StepRecord | None:
        """Register the suspension, append its ``suspend`` event, mark the execution waiting.
        Returns the step's record instead when it was already resolved."""

    def complete(self, execution_id: UUID, steps: list[StepRecord], result: Any) -> None: ...

    def fail(self, execution_id: UUID, steps: list[StepRecord], error: dict[str, Any]) -> None: ...
