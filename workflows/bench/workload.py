"""The workflows ``polos_bench`` runs. Its workers load this module through
``POLOS_WORKFLOW_MODULES=workflows.bench.workload``; it also tells the bench when a worker
consumes (a file per worker process in ``POLOS_BENCH_READY_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from workflows import WorkflowContext, workflow

BENCH_CYCLE_WORKFLOW = "polos-bench-cycle"
BENCH_REPLAY_WORKFLOW = "polos-bench-replay"
READY_DIR_ENV = "POLOS_BENCH_READY_DIR"
#: The form the bench's approvals carry, so a waiting one is as large as a real one.
BENCH_FORM = {
    "title": "Approve the benchmark order?",
    "fields": [{"name": "approved", "type": "boolean", "label": "Approve"}],
}


def step_a(number: int) -> dict[str, Any]:
    return {"checked": number}


def step_b(decision: dict[str, Any]) -> dict[str, Any]:
    return {"approved": bool(decision.get("approved"))}


def suspend_data(number: int) -> dict[str, Any]:
    return {"order": number, "amount": 100 + number % 900, "_form": BENCH_FORM}


@workflow(id=BENCH_CYCLE_WORKFLOW, description="Benchmark: step A, suspend, step B, done")
def bench_cycle(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    number = int(payload.get("n", 0))
    checked = ctx.step.run("a", step_a, number)
    resume = ctx.step.suspend("approval", data=suspend_data(number))
    result = ctx.step.run("b", step_b, resume["data"])
    return {"a": checked, "b": result}


def replay_step(index: int) -> int:
    return index


@workflow(id=BENCH_REPLAY_WORKFLOW, description="Benchmark: many steps, suspend, one more step")
def bench_replay(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    total = 0
    for index in range(int(payload["steps"])):
        total += ctx.step.run(f"s-{index}", replay_step, index)
    resume = ctx.step.suspend("approval", data={"steps": payload["steps"]})
    result = ctx.step.run("b", step_b, resume["data"])
    return {"total": total, "b": result}


@worker_ready.connect
def _announce_ready(**kwargs: Any) -> None:
    directory = os.environ.get(READY_DIR_ENV)
    if directory:
        (Path(directory) / str(os.getpid())).touch()
