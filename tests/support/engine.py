"""One execution of the pure engine on the in-memory store: what the unit tests drive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from workflows.engine.memory import MemoryExecution, MemoryStore
from workflows.engine.registry import registry
from workflows.engine.runner import RunOutcome, run_workflow


@dataclass
class Engine:
    """One execution on a MemoryStore; ``run`` is what a worker does on each advance."""

    store: MemoryStore = field(default_factory=MemoryStore)
    execution_id: UUID = field(default_factory=uuid4)
    sleeps: list[float] = field(default_factory=list)

    @property
    def execution(self) -> MemoryExecution:
        return self.store.execution(self.execution_id)

    def run(self, fn: Any, payload: Any = None) -> RunOutcome:
        spec = registry.get(fn.workflow_id)
        return run_workflow(
            spec,
            execution_id=self.execution_id,
            payload=spec.validate_payload(payload),
            recorded=dict(self.execution.steps),
            store=self.store,
            sleep=self.sleeps.append,
        )

    def resume(self, step_key: str, data: Any, decided_by: str | None = None) -> None:
        self.store.resume(self.execution_id, step_key, data, decided_by=decided_by)

    def time_out(self, step_key: str) -> None:
        self.store.time_out(self.execution_id, step_key)
