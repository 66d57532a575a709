"""Workflows used by the engine's integration and system tests (workers import this module
through POLOS_WORKFLOW_MODULES)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workflows import WorkflowContext, workflow
from workflows.models import Event


def side_effect(name: str, execution_id: str) -> dict[str, Any]:
    """A step with a visible side effect: one row per real run, so tests can count re-runs."""
    Event.objects.create(
        topic=f"side-effects/{execution_id}", event_type="side_effect", data={"step": name}
    )
    return {"ran": name}


def slow_side_effect(name: str, execution_id: str, marker: str) -> dict[str, Any]:
    """Signals it has started (marker file), then works long enough to be killed mid-way."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("POLOS_TEST_SLOW_STEP", "3")))
    return side_effect(name, execution_id)


@workflow(id="test-approval", description="step A, suspend, step B")
def approval_cycle(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    eid = str(ctx.execution_id)
    ctx.step.run("step_a", side_effect, "step_a", eid)
    resume = ctx.step.suspend("approval", data={"amount": payload.get("amount", 0)})
    ctx.step.run("step_b", side_effect, "step_b", eid)
    return {"approved": resume["data"].get("approved"), "decided_by": resume["decided_by"]}


class Order(BaseModel):
    item: str
    amount: float


@workflow(id="test-typed", description="pydantic payload")
def typed(ctx: WorkflowContext, payload: Order) -> dict[str, Any]:
    return {"item": payload.item, "double": payload.amount * 2}


@workflow(id="test-two-stage")
def two_stage(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    first = ctx.step.suspend("manager_approval", data={"stage": 1})
    second = ctx.step.suspend("finance_approval", data={"stage": 2})
    return {"manager": first["data"], "finance": second["data"]}


@workflow(id="test-many-steps")
def many_steps(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    total = 0
    for index in range(int(payload.get("steps", 100))):
        total += ctx.step.run(f"step-{index}", lambda i=index: i)
    decision = ctx.step.suspend("approval", data={})
    return {"total": total, "decision": decision["data"]}


@workflow(id="test-crash")
def crash_recovery(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    eid = str(ctx.execution_id)
    ctx.step.run("first", side_effect, "first", eid)
    ctx.step.run("slow", slow_side_effect, "slow", eid, payload["marker"])
    ctx.step.run("last", side_effect, "last", eid)
    return {"done": True}


@workflow(id="test-fails")
def always_fails(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    def boom() -> None:
        raise RuntimeError("the card was declined")

    ctx.step.run("charge", boom, max_retries=0)
    return {}
