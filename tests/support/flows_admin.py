"""Workflows for the admin's and the notifications' tests (retry, timeouts)."""

from __future__ import annotations

from typing import Any

from tests.support.flows import side_effect
from workflows import WorkflowContext, workflow
from workflows.models import Event


def fixed(execution_id: str) -> bool:
    return Event.objects.filter(topic=f"flaky-fixed/{execution_id}").exists()


def charge(execution_id: str) -> dict[str, Any]:
    if not fixed(execution_id):
        raise RuntimeError("the payment provider is down")
    return side_effect("charge", execution_id)


@workflow(id="admin-flaky", description="fails at 'charge' until the test fixes it")
def flaky(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    eid = str(ctx.execution_id)
    ctx.step.run("prepare", side_effect, "prepare", eid)
    ctx.step.run("charge", charge, eid, max_retries=0)
    return {"charged": True}


@workflow(id="admin-deadline", description="an approval that fails the execution on timeout")
def deadline(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    eid = str(ctx.execution_id)
    ctx.step.run("prepare", side_effect, "prepare", eid)
    decision = ctx.step.suspend("approval", data={"amount": payload.get("amount", 0)}, timeout=60)
    return {"decision": decision["data"]}
