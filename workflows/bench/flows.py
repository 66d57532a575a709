"""The workflow the timeout measurements run. Workers load it through
``POLOS_WORKFLOW_MODULES=workflows.bench.flows``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows import WorkflowContext, workflow

BENCH_TIMEOUT_WORKFLOW = "polos-bench-timeout"


@workflow(id=BENCH_TIMEOUT_WORKFLOW, description="Benchmark: one suspension that times out")
def bench_timeout(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Times out ``payload["timeout"]`` seconds after its suspend, or at ``payload["at"]`` (an
    ISO time; right after the suspend if that time has passed when it suspends)."""
    if "at" in payload:
        started = ctx.step.now("started")
        timeout = max((datetime.fromisoformat(payload["at"]) - started).total_seconds(), 0.001)
    else:
        timeout = payload["timeout"]
    resume = ctx.step.suspend("wait", data={"run": payload.get("run")}, timeout=timeout, default={})
    return {"event_type": resume["event_type"]}
