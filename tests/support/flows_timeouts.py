"""Workflows of the timeout tests (workers import this module through POLOS_WORKFLOW_MODULES).

Each returns what it saw, so a test can check that the workflow took exactly the path the
suspension's final status says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows import SuspendTimeout, WorkflowContext, workflow
from workflows.models import Event

DEFAULT = {"approved": False, "comment": "no decision in time"}


def mark(execution_id: str, name: str) -> dict[str, Any]:
    """A visible side effect: one row per real run, so tests can count re-runs."""
    Event.objects.create(
        topic=f"side-effects/{execution_id}", event_type="side_effect", data={"step": name}
    )
    return {"ran": name}


@workflow(id="test-timeout-path", description="suspend with a timeout; catch SuspendTimeout")
def timeout_path(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        resume = ctx.step.suspend(
            "approval", data={"n": payload.get("n")}, timeout=payload["timeout"]
        )
    except SuspendTimeout as exc:
        ctx.step.run("on_timeout", mark, str(ctx.execution_id), "on_timeout")
        return {
            "path": "timeout",
            "message": str(exc),
            "step_key": exc.step_key,
            "expires_at": exc.expires_at,
        }
    ctx.step.run("on_decision", mark, str(ctx.execution_id), "on_decision")
    return {"path": "decision", "data": resume["data"], "decided_by": resume["decided_by"]}


@workflow(id="test-timeout-default", description="suspend with a timeout and a default")
def timeout_default(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    resume = ctx.step.suspend(
        "approval", data={"n": payload.get("n")}, timeout=payload["timeout"], default=DEFAULT
    )
    return {
        "path": "timeout" if resume["event_type"] == "timeout" else "decision",
        "event_type": resume["event_type"],
        "data": resume["data"],
        "decided_by": resume["decided_by"],
        "sequence_id": resume["sequence_id"],
    }


@workflow(id="test-timeout-uncaught", description="suspend with a timeout, not caught")
def timeout_uncaught(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    ctx.step.suspend("approval", data={}, timeout=payload["timeout"])
    ctx.step.run("after", mark, str(ctx.execution_id), "after")
    return {"path": "decision"}


@workflow(id="test-sleep", description="wait_for, then wait_until, then a step")
def sleeper(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    ctx.step.wait_for("nap", seconds=payload["seconds"])
    woke = ctx.step.now("woke")
    if payload.get("until"):
        ctx.step.wait_until("alarm", datetime.fromisoformat(payload["until"]))
    ctx.step.run("after", mark, str(ctx.execution_id), "after")
    return {"woke": woke.isoformat(), "done": ctx.step.now("done").isoformat()}
