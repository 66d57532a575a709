"""Timeouts with a real worker and a real beat, in this run's mode: threads of this process
(embedded: in-memory broker, SQLite) or ``celery worker`` and ``celery beat`` subprocesses
(services: Redis, PostgreSQL). Deadlines fire on time, once, whoever gets there first."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

import tests.support.flows_timeouts  # noqa: F401 - registers the test workflows
from polos_site.celery import app as celery_app
from tests.support.flows_timeouts import DEFAULT
from tests.support.processes import BASE_DIR, celery_beat, celery_worker, child_env, wait_until
from workflows import services
from workflows.models import Event, Execution, StepOutput, Suspension

pytestmark = [pytest.mark.system]

CHILD_ENV = {"POLOS_WORKFLOW_MODULES": "tests.support.flows_timeouts"}


class Runtime:
    """The worker and beat of this mode, which a test may stop and start again."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> None:
        assert self._stack is None, "already running"
        stack = contextlib.ExitStack()
        if settings.EMBEDDED:
            from polos_site.embedded import start_beat_thread, start_worker_thread

            stack.callback(start_worker_thread().stop)
            stack.callback(start_beat_thread().stop)
        else:
            # Each child spends seconds importing Django: start them side by side.
            children = [celery_worker(env=CHILD_ENV), celery_beat(env=CHILD_ENV)]
            with ThreadPoolExecutor(len(children)) as pool:
                entered = [pool.submit(child.__enter__) for child in children]
            for child, future in zip(children, entered, strict=True):
                if future.exception() is None:
                    stack.push(child.__exit__)
            for future in entered:
                if future.exception() is not None:
                    stack.close()
                    raise future.exception()  # type: ignore[misc]
        self._stack = stack

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()  # beat first, then the worker
            self._stack = None


@pytest.fixture
def runtime(transactional_db) -> Iterator[Runtime]:
    """Worker and beat, not started yet; stopped at the end whatever happened."""
    handle = Runtime()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def running(runtime: Runtime) -> Runtime:
    runtime.start()
    return runtime


def start(workflow_id: str, **payload: Any) -> Execution:
    execution, _ = services.execution_start(workflow_id=workflow_id, payload=payload)
    return execution


def suspension_of(execution: Execution, step_key: str = "approval") -> Suspension:
    wait_until(
        lambda: Suspension.objects.filter(execution=execution, step_key=step_key).exists(),
        timeout=20,
        what=f"{execution.workflow_id} to suspend",
    )
    return Suspension.objects.get(execution=execution, step_key=step_key)


def finished(*executions: Execution, timeout: float = 20) -> list[Execution]:
    ids = [execution.pk for execution in executions]
    wait_until(
        lambda: not Execution.objects.filter(pk__in=ids, status__in=Execution.ACTIVE).exists(),
        timeout=timeout,
        interval=0.02,
        what=f"{len(ids)} execution(s) to finish",
    )
    by_id = Execution.objects.in_bulk(ids)
    return [by_id[pk] for pk in ids]


def outcome_events(suspension: Suspension) -> list[str]:
    return list(
        Event.objects.filter(topic=suspension.topic)
        .exclude(event_type="suspend")
        .values_list("event_type", flat=True)
    )


def side_effects(execution: Execution) -> list[str]:
    return [e.data["step"] for e in Event.objects.filter(topic=f"side-effects/{execution.pk}")]


def test_a_2s_timeout_fires_within_3s_and_the_workflow_takes_its_timeout_path(running):
    # given two workflows suspending for 2 s, one catching SuspendTimeout, one with a default
    caught = start("test-timeout-path", timeout=2)
    defaulted = start("test-timeout-default", timeout=2)
    caught_wait, default_wait = suspension_of(caught), suspension_of(defaulted)

    # when nobody decides
    caught, defaulted = finished(caught, defaulted, timeout=10)

    # then each timed out after its deadline and within 3 s of suspending, and went on from there
    for execution, suspension in ((caught, caught_wait), (defaulted, default_wait)):
        suspension.refresh_from_db()
        assert suspension.status == Suspension.Status.TIMED_OUT
        assert suspension.expires_at <= suspension.decided_at
        assert suspension.decided_at - suspension.created_at < timedelta(seconds=3)
        assert execution.finished_at - suspension.created_at < timedelta(seconds=3)
        assert outcome_events(suspension) == ["timeout"]
    assert caught.status == Execution.Status.COMPLETED
    assert caught.result["path"] == "timeout"
    assert "'approval'" in caught.result["message"]
    assert caught_wait.expires_at.isoformat() in caught.result["message"]
    assert side_effects(caught) == ["on_timeout"]
    # and default= returned the default, shaped like a resume event
    assert defaulted.status == Execution.Status.COMPLETED
    assert defaulted.result["event_type"] == "timeout"
    assert defaulted.result["data"] == DEFAULT
    assert defaulted.result["decided_by"] is None


def test_wait_for_and_wait_until_park_without_holding_a_worker_and_wake_on_time(running):
    # given more sleepers than worker processes (one), each napping 2 s then sleeping until
    # t0 + 3 s
    t0 = timezone.now()
    until = t0 + timedelta(seconds=3)
    sleepers = [start("test-sleep", seconds=2, until=until.isoformat()) for _ in range(6)]
    naps = [suspension_of(sleeper, "nap") for sleeper in sleepers]

    # then they wait parked on sleep timers
    assert all(nap.kind == Suspension.Kind.SLEEP for nap in naps)

    # when the times come they all wake together: no sleeper held a worker
    done = finished(*sleepers, timeout=15)
    for execution, nap in zip(done, naps, strict=True):
        assert execution.status == Execution.Status.COMPLETED, execution.error
        assert datetime.fromisoformat(execution.result["woke"]) >= nap.expires_at
        assert datetime.fromisoformat(execution.result["done"]) >= until
        assert side_effects(execution) == ["after"]
    # one after the other, holding the worker, they would take 3 s + 5 x 2 s
    assert max(e.finished_at for e in done) - t0 < timedelta(seconds=7)


def purge_broker() -> int:
    """Drop every message waiting in the broker's queue (what a broker restart, a purge or an
    embedded restart does to the queued eta messages)."""
    return celery_app.control.purge()


def test_a_lost_eta_message_is_still_fired_by_beat(runtime):
    # given a suspension whose eta message never reaches a worker (purged from the broker)
    execution = start("test-timeout-default", timeout=2)
    assert services.execution_advance(execution_id=execution.pk) == services.ADVANCE_DONE
    suspension = Suspension.objects.get(execution=execution)
    assert purge_broker() >= 2  # the start's nudge and the suspension's eta message

    # when a worker and beat run
    runtime.start()
    (execution,) = finished(execution, timeout=15)

    # then beat's sweep fired it, after its deadline, once
    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.TIMED_OUT
    assert suspension.decided_at >= suspension.expires_at
    assert outcome_events(suspension) == ["timeout"]
    assert execution.result["data"] == DEFAULT


def test_worker_and_beat_down_past_a_deadline_fire_it_once_when_back(runtime):
    # given a suspension with a 2 s timeout, and then the worker and beat stopped
    runtime.start()
    execution = start("test-timeout-path", timeout=2)
    suspension = suspension_of(execution)
    runtime.stop()

    # when its deadline passes while they are down
    time.sleep(max(0.0, (suspension.expires_at - timezone.now()).total_seconds()) + 1.0)
    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.PENDING
    restarted = timezone.now()
    runtime.start()

    # then it fires as soon as they are back: late, never lost, and once
    (execution,) = finished(execution, timeout=15)
    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.TIMED_OUT
    assert suspension.decided_at >= restarted
    assert outcome_events(suspension) == ["timeout"]
    assert StepOutput.objects.filter(execution=execution, step_key="approval").count() == 1
    assert execution.result["path"] == "timeout"
    assert side_effects(execution) == ["on_timeout"]


RACERS = 45


def test_decision_versus_timeout_across_two_processes_never_both_never_neither(
    running, tmp_path: Path
):
    # given many suspensions whose deadlines fall within two seconds
    executions = [
        start("test-timeout-default", timeout=5 + 0.04 * index, n=index) for index in range(RACERS)
    ]
    suspensions = [suspension_of(execution) for execution in executions]

    # when another process decides each one just before, right at, or after its deadline,
    # while the worker and beat time them out
    rng = random.Random(4)
    plan = []
    for index, suspension in enumerate(suspensions):
        offset = (-0.25, rng.uniform(-0.01, 0.02), 1.5)[index % 3]
        at = suspension.expires_at + timedelta(seconds=offset)
        plan.append(
            {
                "execution_id": str(suspension.execution_id),
                "step_key": "approval",
                "at": at.isoformat(),
            }
        )
    plan_path, results_path = tmp_path / "plan.json", tmp_path / "results.json"
    plan_path.write_text(json.dumps(plan))
    subprocess.run(
        [sys.executable, "-m", "tests.support.decider", str(plan_path), str(results_path)],
        cwd=BASE_DIR,
        env=child_env(CHILD_ENV),
        check=True,
        timeout=60,
    )
    decider = json.loads(results_path.read_text())
    # The decider's own nudges reach no worker in embedded mode (its broker is its own): the
    # requeue sweep's work, done now rather than in 30 s.
    services.executions_requeue_stale(older_than=0)
    done = finished(*executions, timeout=30)

    # then each suspension has exactly one outcome, one event, and the workflow saw that one
    outcomes = {"resumed": 0, "timed_out": 0}
    for execution, suspension in zip(done, suspensions, strict=True):
        suspension.refresh_from_db()
        step = StepOutput.objects.get(execution=execution, step_key="approval")
        assert execution.status == Execution.Status.COMPLETED, execution.error
        if suspension.status == Suspension.Status.RESUMED:
            assert decider[str(execution.pk)] == "won"
            assert outcome_events(suspension) == ["resume"]
            assert step.output["event_type"] == "resume"
            assert execution.result["path"] == "decision"
            assert execution.result["data"]["approved"] is True
        else:
            assert suspension.status == Suspension.Status.TIMED_OUT
            assert decider[str(execution.pk)] == "timed_out"
            assert outcome_events(suspension) == ["timeout"]
            assert step.output["event_type"] == "timeout"
            assert execution.result["path"] == "timeout"
            assert execution.result["data"] == DEFAULT
        outcomes[suspension.status] += 1
    assert outcomes["resumed"] and outcomes["timed_out"], outcomes
