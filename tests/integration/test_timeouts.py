"""Suspension timeouts and durable sleeps on the real database, driven in-process: the
timeout services, the timers' arming rules, the sweep's beat entry, and the races of a timeout
with a decision and with a cancel (threads, each on its own connection)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.test.utils import override_settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

import tests.support.flows  # noqa: F401 - registers the test workflows (and the import below)
from tests.support.flows_timeouts import DEFAULT
from workflows import services, timers
from workflows.errors import SuspensionNotPending
from workflows.models import Event, Execution, StepOutput, Suspension
from workflows.selectors import execution_as_dict
from workflows.tasks import execution_advance_task, suspension_expire_task

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sent(monkeypatch) -> list[tuple[int, Any]]:
    """The eta messages the timers send (suspension id, eta), instead of the broker; advance
    nudges are dropped (the tests advance executions themselves)."""
    messages: list[tuple[int, Any]] = []
    monkeypatch.setattr(
        timers,
        "suspension_timer_send",
        lambda *, suspension_id, expires_at: messages.append((suspension_id, expires_at)),
    )
    monkeypatch.setattr(execution_advance_task, "delay", lambda *args, **kwargs: None)
    return messages


def start_suspended(workflow_id: str, **payload: Any) -> tuple[Execution, Suspension]:
    execution, _ = services.execution_start(workflow_id=workflow_id, payload=payload)
    assert services.execution_advance(execution_id=execution.pk) == services.ADVANCE_DONE
    execution.refresh_from_db()
    assert execution.status == Execution.Status.WAITING
    return execution, Suspension.objects.get(execution=execution)


def make_due(suspension: Suspension, seconds_ago: float = 0.001) -> None:
    expires_at = timezone.now() - timedelta(seconds=seconds_ago)
    Suspension.objects.filter(pk=suspension.pk).update(expires_at=expires_at)
    suspension.refresh_from_db()


def advance(execution: Execution) -> Execution:
    assert services.execution_advance(execution_id=execution.pk) == services.ADVANCE_DONE
    execution.refresh_from_db()
    return execution


def topic_events(suspension: Suspension) -> list[str]:
    return list(
        Event.objects.filter(topic=suspension.topic)
        .order_by("sequence_id")
        .values_list("event_type", flat=True)
    )


def side_effects(execution: Execution) -> list[str]:
    return [e.data["step"] for e in Event.objects.filter(topic=f"side-effects/{execution.pk}")]


# -- the timeout path -------------------------------------------------------------------------


@pytest.mark.django_db
def test_suspend_stores_the_deadline_and_arms_a_near_one_on_commit(
    sent, django_capture_on_commit_callbacks
):
    # given a workflow that suspends with a 30 s timeout
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        _, suspension = start_suspended("test-timeout-path", timeout=30)

    # then the deadline is 30 s after the suspend, and one eta message was sent for it
    assert before + timedelta(seconds=30) <= suspension.expires_at
    assert suspension.expires_at <= timezone.now() + timedelta(seconds=30)
    assert sent == [(suspension.pk, suspension.expires_at)]
    suspend_event = Event.objects.get(topic=suspension.topic, event_type="suspend")
    assert suspend_event.data["expires_at"] == suspension.expires_at.isoformat()


@pytest.mark.django_db
def test_timeout_without_default_takes_the_workflows_timeout_path(sent):
    # given a pending suspension whose deadline has passed
    execution, suspension = start_suspended("test-timeout-path", timeout=60, n=1)
    make_due(suspension)

    # when it expires
    assert services.suspension_expire(suspension_id=suspension.pk) is True

    # then it is timed out, one timeout event is logged, and the execution is queued
    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.TIMED_OUT
    assert suspension.decided_at is not None and suspension.decided_by is None
    assert topic_events(suspension) == ["suspend", "timeout"]
    timeout_event = Event.objects.get(topic=suspension.topic, event_type="timeout")
    assert timeout_event.step_key == "approval"
    assert timeout_event.data == {
        "expires_at": suspension.expires_at.isoformat(),
        "default_applied": False,
        "default": None,
    }
    execution.refresh_from_db()
    assert execution.status == Execution.Status.QUEUED

    # and the replay raises SuspendTimeout, naming the step and the deadline, which it catches
    execution = advance(execution)
    assert execution.status == Execution.Status.COMPLETED
    assert execution.result["path"] == "timeout"
    assert execution.result["step_key"] == "approval"
    assert execution.result["expires_at"] == suspension.expires_at.isoformat()
    assert "'approval'" in execution.result["message"]
    assert suspension.expires_at.isoformat() in execution.result["message"]
    assert side_effects(execution) == ["on_timeout"]


@pytest.mark.django_db
def test_uncaught_timeout_fails_the_execution_with_suspend_timeout(sent):
    execution, suspension = start_suspended("test-timeout-uncaught", timeout=60)
    make_due(suspension)

    services.suspension_expire(suspension_id=suspension.pk)
    execution = advance(execution)

    assert execution.status == Execution.Status.FAILED
    assert execution.error["type"] == "SuspendTimeout"
    assert "'approval'" in execution.error["message"]
    assert suspension.expires_at.isoformat() in execution.error["message"]
    assert side_effects(execution) == []


@pytest.mark.django_db
def test_timeout_with_default_returns_a_timeout_event_carrying_the_default(sent):
    execution, suspension = start_suspended("test-timeout-default", timeout=60)
    make_due(suspension)

    services.suspension_expire(suspension_id=suspension.pk)
    execution = advance(execution)

    timeout_event = Event.objects.get(topic=suspension.topic, event_type="timeout")
    assert timeout_event.data["default_applied"] is True
    assert timeout_event.data["default"] == DEFAULT
    assert execution.status == Execution.Status.COMPLETED
    assert execution.result == {
        "path": "timeout",
        "event_type": "timeout",
        "data": DEFAULT,
        "decided_by": None,
        "sequence_id": timeout_event.sequence_id,
    }
    # the history says "timed out, default applied"
    (history,) = execution_as_dict(execution)["suspensions"]
    assert history["status"] == "timed_out"
    assert history["default_applied"] is True


@pytest.mark.django_db
def test_expiring_is_idempotent_and_waits_for_the_deadline(sent):
    # given a suspension not due yet
    execution, suspension = start_suspended("test-timeout-default", timeout=60)

    # then expiring it does nothing (an early message re-arms itself instead)
    assert services.suspension_expire(suspension_id=suspension.pk) is False
    sent.clear()
    assert timers.suspension_timer_rearm_if_early(suspension_id=suspension.pk) is True
    assert sent == [(suspension.pk, suspension.expires_at)]

    # when it is due, it fires once, whoever asks and however often
    make_due(suspension)
    assert services.suspension_expire(suspension_id=suspension.pk) is True
    assert services.suspension_expire(suspension_id=suspension.pk) is False
    assert services.suspensions_expire_due() == 0
    assert timers.suspension_timer_rearm_if_early(suspension_id=suspension.pk) is False
    assert topic_events(suspension) == ["suspend", "timeout"]
    assert StepOutput.objects.filter(execution=execution, step_key="approval").count() == 1


@pytest.mark.django_db
def test_a_decided_suspension_never_times_out_and_a_timed_out_one_refuses_decisions(sent):
    decided_execution, decided = start_suspended("test-timeout-path", timeout=60)
    services.suspension_resolve(
        execution_id=decided_execution.pk, step_key="approval", data={"approved": True}
    )
    make_due(decided)
    timed_out_execution, timed_out = start_suspended("test-timeout-path", timeout=60)
    make_due(timed_out)

    assert services.suspensions_expire_due() == 1
    with pytest.raises(SuspensionNotPending) as refused:
        services.suspension_resolve(
            execution_id=timed_out_execution.pk, step_key="approval", data={"approved": True}
        )

    assert refused.value.status == Suspension.Status.TIMED_OUT
    decided.refresh_from_db()
    assert decided.status == Suspension.Status.RESUMED
    assert topic_events(decided) == ["suspend", "resume"]
    assert topic_events(timed_out) == ["suspend", "timeout"]


@pytest.mark.django_db
def test_sweep_fires_every_due_suspension_in_batches_and_nothing_else(sent):
    due = [start_suspended("test-timeout-default", timeout=60, n=i)[1] for i in range(5)]
    for suspension in due:
        make_due(suspension)
    _, later = start_suspended("test-timeout-default", timeout=60)
    _, forever = start_suspended("test-approval", amount=1)

    assert services.suspensions_expire_due(limit=2) == 5

    assert set(
        Suspension.objects.filter(status=Suspension.Status.TIMED_OUT).values_list("pk", flat=True)
    ) == {s.pk for s in due}
    assert Suspension.objects.filter(pk__in=[later.pk, forever.pk], status="pending").count() == 2
    assert Execution.objects.filter(status=Execution.Status.QUEUED).count() == 5


# -- durable sleep ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_wait_for_parks_without_a_worker_and_wakes_at_the_time(sent):
    # given a workflow sleeping for an hour
    execution, nap = start_suspended("test-sleep", seconds=3600)

    # then it waits on a sleep timer, not an approval: no suspend event, no decision possible
    assert nap.kind == Suspension.Kind.SLEEP
    assert nap.expires_at > timezone.now() + timedelta(seconds=3590)
    assert topic_events(nap) == []
    assert not services.suspension_expire(suspension_id=nap.pk)

    # when the time comes it wakes, runs on, and a past wait_until returns at once
    make_due(nap)
    assert services.suspensions_expire_due() == 1
    execution.refresh_from_db()
    assert execution.status == Execution.Status.QUEUED
    execution = advance(execution)
    assert execution.status == Execution.Status.COMPLETED
    step = StepOutput.objects.get(execution=execution, step_key="nap")
    assert step.kind == "sleep" and step.status == StepOutput.Status.COMPLETED
    assert step.output["until"] == nap.expires_at.isoformat()
    assert side_effects(execution) == ["after"]


@pytest.mark.django_db
def test_wait_until_parks_until_exactly_then(sent):
    when = timezone.now() + timedelta(hours=5)
    execution, nap = start_suspended("test-sleep", seconds=1, until=when.isoformat())
    make_due(nap)
    services.suspensions_expire_due()
    execution = advance(execution)

    assert execution.status == Execution.Status.WAITING
    alarm = Suspension.objects.get(execution=execution, step_key="alarm")
    assert alarm.kind == Suspension.Kind.SLEEP and alarm.expires_at == when


# -- when deadlines are armed -------------------------------------------------------------------


@pytest.mark.django_db
def test_far_deadlines_are_armed_by_the_sweep_when_they_come_near(
    sent, django_capture_on_commit_callbacks
):
    # given one suspension due in 2 days (beyond the horizon) and one due in 30 s (within it)
    with django_capture_on_commit_callbacks(execute=True):
        _, far = start_suspended("test-timeout-path", timeout=2 * 24 * 3600)
        _, near = start_suspended("test-timeout-path", timeout=30)

    # then only the near one got its eta message at suspend time
    assert sent == [(near.pk, near.expires_at)]

    # and the sweep arms neither yet: the far one is far, the near one is armed already
    sent.clear()
    assert timers.suspension_timers_arm() == 0

    # when both come within the sweep's look-ahead (two days later), the sweep arms the far one
    soon = timezone.now() + timedelta(seconds=timers.arming_lookahead() / 2)
    Suspension.objects.filter(pk=far.pk).update(
        expires_at=soon, created_at=soon - timedelta(days=2)
    )
    Suspension.objects.filter(pk=near.pk).update(
        expires_at=soon, created_at=soon - timedelta(seconds=30)
    )
    far.refresh_from_db()
    assert timers.suspension_timers_arm() == 1
    assert sent == [(far.pk, far.expires_at)]


# -- the sweep's beat entry ---------------------------------------------------------------------


@pytest.mark.django_db
def test_migrate_creates_the_sweep_entry_every_second():
    entry = PeriodicTask.objects.get(name=timers.SWEEP_ENTRY_NAME)
    assert entry.task == "workflows.suspensions_sweep"
    assert entry.enabled
    assert (entry.interval.every, entry.interval.period) == (1, IntervalSchedule.SECONDS)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("interval", "every", "period"),
    [(2.0, 2, IntervalSchedule.SECONDS), (0.5, 500_000, IntervalSchedule.MICROSECONDS)],
)
def test_beat_start_applies_the_sweep_interval_setting(interval, every, period):
    # given an admin who disabled the sweep and set it to every 10 minutes
    entry = PeriodicTask.objects.get(name=timers.SWEEP_ENTRY_NAME)
    entry.enabled = False
    entry.interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    entry.save()

    # when beat starts with POLOS_SWEEP_INTERVAL set
    with override_settings(POLOS_SWEEP_INTERVAL=interval):
        timers.suspension_sweep_ensure()

    # then the interval follows the setting, and enabling stays the admin's choice
    entry.refresh_from_db()
    assert (entry.interval.every, entry.interval.period) == (every, period)
    assert entry.enabled is False


@pytest.mark.django_db
def test_beat_start_recreates_a_deleted_sweep_entry():
    PeriodicTask.objects.filter(name=timers.SWEEP_ENTRY_NAME).delete()

    timers.suspension_sweep_ensure()
    timers.suspension_sweep_ensure()

    entry = PeriodicTask.objects.get(name=timers.SWEEP_ENTRY_NAME)
    assert entry.enabled and entry.task == "workflows.suspensions_sweep"


def test_sweep_messages_expire_rather_than_pile_up():
    from workflows.tasks import suspensions_sweep_task

    assert suspensions_sweep_task.expires == 60
    assert suspension_expire_task.acks_late is True


# -- races: one outcome each --------------------------------------------------------------------


def race(*callables: Callable[[], Any]) -> list[Any]:
    """Run the callables at the same moment in threads (own connections); their results, or
    the exceptions they raised."""
    barrier = threading.Barrier(len(callables))
    results: list[Any] = [None] * len(callables)

    def run(index: int, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = fn()
        except Exception as exc:
            results[index] = exc
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(callables)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.fixture
def suspended_many(transactional_db, sent) -> Iterator[Callable[[int], list[Suspension]]]:
    def make(count: int) -> list[Suspension]:
        suspensions = []
        for index in range(count):
            _, suspension = start_suspended("test-timeout-default", timeout=60, n=index)
            suspensions.append(suspension)
        return suspensions

    yield make


RACES = 20


def test_decision_and_timeout_at_the_same_moment_have_one_outcome(suspended_many):
    outcomes = []
    for suspension in suspended_many(RACES):
        make_due(suspension)
        decided, expired = race(
            lambda s=suspension: services.suspension_resolve(
                execution_id=s.execution_id, step_key="approval", data={"approved": True}
            ),
            lambda s=suspension: services.suspension_expire(suspension_id=s.pk),
        )
        suspension.refresh_from_db()
        events = topic_events(suspension)
        if suspension.status == Suspension.Status.RESUMED:
            assert isinstance(decided, Suspension) and expired is False
            assert events == ["suspend", "resume"]
        else:
            assert suspension.status == Suspension.Status.TIMED_OUT
            assert isinstance(decided, SuspensionNotPending) and expired is True
            assert events == ["suspend", "timeout"]
        step = StepOutput.objects.get(execution_id=suspension.execution_id, step_key="approval")
        assert step.output["event_type"] == events[-1]
        outcomes.append(suspension.status)
    assert len(outcomes) == RACES


def test_cancel_and_timeout_at_the_same_moment_have_one_outcome(suspended_many):
    for index, suspension in enumerate(suspended_many(RACES)):
        make_due(suspension)
        cancelled, fired = race(
            lambda s=suspension: services.execution_cancel(execution_id=s.execution_id),
            # the eta message's way and the sweep's way, in turn
            (lambda s=suspension: int(services.suspension_expire(suspension_id=s.pk)))
            if index % 2
            else services.suspensions_expire_due,
        )
        # neither side failed (no deadlock, no error): the cancel always wins the execution
        assert isinstance(cancelled, Execution), cancelled
        assert fired in (0, 1), fired
        suspension.refresh_from_db()
        events = topic_events(suspension)
        if fired:
            assert suspension.status == Suspension.Status.TIMED_OUT
            assert events == ["suspend", "timeout"]
        else:
            assert suspension.status == Suspension.Status.CANCELLED
            assert events == ["suspend", "cancel"]
        execution = Execution.objects.get(pk=suspension.execution_id)
        assert execution.status == Execution.Status.CANCELLED


def test_decision_and_cancel_at_the_same_moment_never_deadlock(suspended_many):
    for suspension in suspended_many(RACES):
        decided, cancelled = race(
            lambda s=suspension: services.suspension_resolve(
                execution_id=s.execution_id, step_key="approval", data={"approved": True}
            ),
            lambda s=suspension: services.execution_cancel(execution_id=s.execution_id),
        )
        # the cancel always ends the execution; the decision either came first or is refused
        assert isinstance(cancelled, Execution), cancelled
        suspension.refresh_from_db()
        if isinstance(decided, Suspension):
            assert suspension.status == Suspension.Status.RESUMED
            assert topic_events(suspension) == ["suspend", "resume"]
        else:
            assert isinstance(decided, SuspensionNotPending), decided
            assert suspension.status == Suspension.Status.CANCELLED
            assert topic_events(suspension) == ["suspend", "cancel"]
        execution = Execution.objects.get(pk=suspension.execution_id)
        assert execution.status == Execution.Status.CANCELLED
