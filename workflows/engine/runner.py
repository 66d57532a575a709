"""Runs (or replays) a workflow function once and reports what happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from .context import WorkflowContext, error_info
from .exceptions import ExecutionCancelled, Suspended
from .registry import WorkflowSpec
from .serialization import to_json_value
from .store import StepRecord, Store


@dataclass(frozen=True)
class RunOutcome:
    status: Literal["completed", "failed", "suspended", "cancelled"]
    result: Any = None
    error: dict[str, Any] | None = None
    step_key: str = ""


def run_workflow(
    spec: WorkflowSpec,
    *,
    execution_id: UUID,
    payload: dict[str, Any],
    recorded: dict[str, StepRecord],
    store: Store,
    sleep: Callable[[float], None] = time.sleep,
) -> RunOutcome:
    """Replay ``spec`` from its recorded steps and run it until it ends or suspends.

    Every outcome is persisted through ``store`` before this returns. Call it while holding
    the execution's lease, outside any transaction: steps must not run under a lock.
    """
    ctx = WorkflowContext(
        execution_id=execution_id,
        workflow_id=spec.id,
        recorded=recorded,
        store=store,
        sleep=sleep,
    )
    try:
        try:
            result = to_json_value(
                spec.fn(ctx, spec.load_payload(payload)), what=f"result of {spec.id!r}"
            )
        except Suspended as suspended:
            return RunOutcome("suspended", step_key=suspended.step_key)
        except Exception as exc:
            error = error_info(exc)
            store.fail(execution_id, ctx.step.take_pending(), error)
            return RunOutcome("failed", error=error)
        store.complete(execution_id, ctx.step.take_pending(), result)
        return RunOutcome("completed", result=result)
    except ExecutionCancelled:
        return RunOutcome("cancelled")
