"""The engine with a real worker: a ``celery worker`` process on Redis and PostgreSQL in
services mode, the embedded worker thread (or ``polos_run``) in embedded mode."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

import tests.support.flows  # noqa: F401 - registers the test workflows
from tests.support.processes import celery_beat, celery_worker, polos_run, wait_until
from workflows import services
from workflows.errors import SuspensionNotPending
from workflows.models import Event, Execution, Suspension

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

CHILD_ENV = {"POLOS_WORKFLOW_MODULES": "tests.support.flows", "POLOS_TEST_SLOW_STEP": "2"}


@contextlib.contextmanager
def worker() -> Iterator[None]:
    if settings.EMBEDDED:
        from polos_site.embedded import start_worker_thread

        handle = start_worker_thread()
        try:
            yield
        finally:
            handle.stop()
    else:
        with celery_worker(env=CHILD_ENV):
            yield


def status_becomes(execution: Execution, status: str, timeout: float = 20.0) -> Execution:
    def reached() -> bool:
        execution.refresh_from_db()
        return execution.status == status

    wait_until(reached, timeout=timeout, what=f"execution {execution.pk} to be {status}")
    return execution


def side_effects(execution: Execution) -> list[str]:
    return list(
        Event.objects.filter(topic=f"side-effects/{execution.pk}")
        .order_by("sequence_id")
        .values_list("data__step", flat=True)
    )


def test_worker_runs_a_full_approval_cycle():
    approver = get_user_model().objects.create_user("ann", password="pw", is_staff=True)
    with worker():
        # given a started execution
        execution, _ = services.execution_start(workflow_id="test-approval", payload={"amount": 9})

        # the worker runs it to its suspension, storing the suspend event
        status_becomes(execution, Execution.Status.WAITING)
        suspend = Event.objects.get(topic=f"approval/{execution.pk}", event_type="suspend")
        assert suspend.data["data"] == {"amount": 9}

        # when a person decides
        services.suspension_resolve(
            execution_id=execution.pk, step_key="approval", data={"approved": True}, user=approver
        )

        # then the worker completes it with the decision
        status_becomes(execution, Execution.Status.COMPLETED)
    assert execution.result == {"approved": True, "decided_by": "ann"}
    assert side_effects(execution) == ["step_a", "step_b"]
    with pytest.raises(SuspensionNotPending) as again:
        services.suspension_resolve(
            execution_id=execution.pk, step_key="approval", data={"approved": False}
        )
    assert again.value.decided_by == "ann"


def test_worker_runs_both_stages_of_a_multi_stage_approval():
    with worker():
        execution, _ = services.execution_start(workflow_id="test-two-stage", payload={})
        status_becomes(execution, Execution.Status.WAITING)
        services.suspension_resolve(
            execution_id=execution.pk, step_key="manager_approval", data={"approved": True}
        )
        wait_until(
            lambda: Suspension.objects.filter(
                execution=execution, step_key="finance_approval"
            ).exists(),
            timeout=20,
            what="the finance stage",
        )
        services.suspension_resolve(
            execution_id=execution.pk, step_key="finance_approval", data={"approved": False}
        )
        status_becomes(execution, Execution.Status.COMPLETED)
    assert execution.result == {"manager": {"approved": True}, "finance": {"approved": False}}


def test_cancel_stops_a_waiting_execution_for_good():
    with worker():
        execution, _ = services.execution_start(workflow_id="test-approval", payload={})
        status_becomes(execution, Execution.Status.WAITING)
        services.execution_cancel(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.CANCELLED
    assert side_effects(execution) == ["step_a"]


def test_a_worker_killed_mid_step_is_recovered_without_rerunning_finished_steps(tmp_path: Path):
    marker = tmp_path / "slow-step-started"
    recovery_env = {**CHILD_ENV, "POLOS_REQUEUE_AFTER": "1"}
    if settings.EMBEDDED:
        # The whole application is one process: kill it, start it again.
        execution, _ = services.execution_start(
            workflow_id="test-crash", payload={"marker": str(marker)}
        )
        with polos_run(env=recovery_env, expect_clean_exit=False) as server:
            wait_until(marker.exists, timeout=30, what="the slow step to start")
            server.child.process.send_signal(signal.SIGKILL)
            server.child.process.wait()
        execution.refresh_from_db()
        assert execution.status == Execution.Status.RUNNING
        with polos_run(env=recovery_env):
            status_becomes(execution, Execution.Status.COMPLETED, timeout=40)
    else:
        with celery_worker(env=CHILD_ENV, args=("--pool", "prefork", "--concurrency", "1")) as w:
            execution, _ = services.execution_start(
                workflow_id="test-crash", payload={"marker": str(marker)}
            )
            wait_until(marker.exists, timeout=30, what="the slow step to start")
            w.kill_group()  # SIGKILL to the worker and its pool process
        execution.refresh_from_db()
        assert execution.status == Execution.Status.RUNNING
        # A new worker, and beat's sweep re-sends the orphan (its lease died with the worker).
        with celery_worker(env=recovery_env), celery_beat(env=recovery_env):
            status_becomes(execution, Execution.Status.COMPLETED, timeout=40)
    assert execution.result == {"done": True}
    assert side_effects(execution) == ["first", "slow", "last"]
