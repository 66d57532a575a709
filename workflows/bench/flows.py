"""The workflow the timeout measurements run. Workers load it through
``POLOS_WORKFLOW_MODULES=workflows.bench.flows``."""

from __future__ import annotations

from typing import Any

from workflows import WorkflowContext, workflow

BENCH_TIMEOUT_WORKFLOW = "polos-bench-timeout"


@workflow(id=BENCH_TIMEOUT_WORKFLOW, description="Benchmark: one suspension that times out")
def bench_timeout(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    resume = ctx.step.suspend(
        "wait", data={"run": payload.get("run")}, timeout=payload["timeout"], default={}
    )
    return {"event_type": resume["event_type"]}
