"""Suspension deadlines: an eta message for each near deadline, a beat sweep as the safety net.

How a deadline fires:

- ``DjangoStore.suspend`` calls ``suspension_timer_schedule``: once its transaction commits, a
  ``suspension_expire_task`` message goes to the broker with ``eta=expires_at`` when the
  deadline is within ``timer_horizon()``. That message is what makes timeouts punctual.
- Beat runs ``suspensions_sweep_task`` every ``POLOS_SWEEP_INTERVAL`` seconds. It expires every
  due pending suspension (a lost message, workers or beat down past a deadline: late, never
  lost) and arms, with ``suspension_timers_arm``, the deadlines of the next
  ``arming_lookahead()`` seconds that were too far off to be armed at suspend time.
- Whoever fires goes through ``services.suspension_expire`` / ``suspensions_expire_due``, which
  re-check the row under its lock: a duplicate or early message does nothing.

Why not an eta message for every deadline at suspend time: with Redis, Celery keeps an eta
message unacknowledged in the worker's memory until it runs, and the broker redelivers any
message unacknowledged for longer than its ``visibility_timeout`` (an hour here), again every
hour, to whichever worker. A 2 h or 2 day approval would cost a message held per suspension,
duplicated hourly. The horizon keeps every held message far younger than the visibility
timeout, and worker memory bounded by the deadlines of the next few minutes; the database stays
the only record of deadlines.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

logger = logging.getLogger(__name__)

SWEEP_ENTRY_NAME = "polos: expire due suspensions"
SWEEP_TASK = "workflows.suspensions_sweep"
#: Deadlines closer than this at suspend time get their eta message right away (seconds).
DEFAULT_TIMER_HORIZON = 300.0
MIN_SWEEP_INTERVAL = 0.1


def sweep_interval() -> float:
    """Seconds between two beat sweeps (``POLOS_SWEEP_INTERVAL``, default 1)."""
    return max(float(settings.POLOS_SWEEP_INTERVAL or 1.0), MIN_SWEEP_INTERVAL)


def arming_lookahead() -> float:
    """How far ahead each sweep arms deadlines: two intervals, so every deadline falls in the
    window of at least one sweep even when beat ticks a little late."""
    return 2 * sweep_interval()


def timer_horizon() -> float:
    """Deadlines within this many seconds are armed at suspend time; never more than half the
    broker's visibility timeout, so no held eta message is ever redelivered."""
    horizon = float(getattr(settings, "POLOS_TIMER_HORIZON", DEFAULT_TIMER_HORIZON))
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    visibility = options.get("visibility_timeout")
    if visibility:
        horizon = min(horizon, float(visibility) / 2)
    return max(horizon, arming_lookahead())


def suspension_timer_send(*, suspension_id: int, expires_at: datetime) -> None:
    """Send the eta message now (outside a transaction, or for a row already committed)."""
    from workflows.tasks import suspension_expire_task

    suspension_expire_task.apply_async(args=(suspension_id,), eta=expires_at)


def suspension_timer_schedule(*, suspension_id: int, expires_at: datetime) -> None:
    """Arm the suspension's deadline once the current transaction commits, if it is near
    enough; a farther one is armed by the sweep when it comes near. Call inside the
    transaction that creates the suspension."""
    if (expires_at - timezone.now()).total_seconds() > timer_horizon():
        return
    transaction.on_commit(
        lambda: suspension_timer_send(suspension_id=suspension_id, expires_at=expires_at)
    )


def suspension_timers_arm(*, limit: int = 1000) -> int:
    """Send the eta messages of pending deadlines due within ``arming_lookahead()`` that were
    beyond the horizon at suspend time (the nearer ones were armed then). A deadline may be
    armed by two consecutive sweeps; the second message finds it decided and does nothing.
    Returns how many messages were sent."""
    from workflows.models import Suspension

    now = timezone.now()
    upcoming = list(
        Suspension.objects.filter(
            status=Suspension.Status.PENDING,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(seconds=arming_lookahead()),
            created_at__lt=F("expires_at") - timedelta(seconds=timer_horizon()),
        )
        .order_by("expires_at")
        .values_list("pk", "expires_at")[:limit]
    )
    for suspension_id, expires_at in upcoming:
        if expires_at is not None:  # always, by the filter; for the type checker
            suspension_timer_send(suspension_id=suspension_id, expires_at=expires_at)
    return len(upcoming)


def suspension_timer_rearm_if_early(*, suspension_id: int) -> bool:
    """After an eta message found nothing to expire: if the suspension is still pending and its
    deadline is still ahead (the message came early, or the deadline moved), send it again.
    Returns whether it did."""
    from workflows.models import Suspension

    expires_at = (
        Suspension.objects.filter(pk=suspension_id, status=Suspension.Status.PENDING)
        .values_list("expires_at", flat=True)
        .first()
    )
    if expires_at is None or expires_at <= timezone.now():
        return False
    if (expires_at - timezone.now()).total_seconds() > timer_horizon():
        return False  # moved far away: the sweep arms it when it comes near
    suspension_timer_send(suspension_id=suspension_id, expires_at=expires_at)
    return True


def _interval_schedule(seconds: float) -> Any:
    from django_celery_beat.models import IntervalSchedule

    if float(seconds).is_integer():
        every, period = int(seconds), IntervalSchedule.SECONDS
    else:
        every, period = round(seconds * 1_000_000), IntervalSchedule.MICROSECONDS
    schedule = IntervalSchedule.objects.filter(every=every, period=period).first()
    return schedule or IntervalSchedule.objects.create(every=every, period=period)


def suspension_sweep_ensure() -> Any:
    """Make the sweep's beat entry exist and run every ``POLOS_SWEEP_INTERVAL`` seconds.

    The data migration creates the entry; beat calls this as it starts (``beat_init``), so the
    setting wins over an interval edited in the admin, and a deleted entry comes back (the
    sweep is what guarantees that every deadline fires). Whether the entry is enabled stays the
    admin's choice. Returns the ``PeriodicTask``.
    """
    from django_celery_beat.models import PeriodicTask

    seconds = sweep_interval()
    schedule = _interval_schedule(seconds)
    entry = PeriodicTask.objects.filter(name=SWEEP_ENTRY_NAME).select_related("interval").first()
    if entry is None:
        entry = PeriodicTask.objects.create(
            name=SWEEP_ENTRY_NAME, task=SWEEP_TASK, interval=schedule, enabled=True
        )
        logger.info("created the beat entry %r (every %s s)", SWEEP_ENTRY_NAME, seconds)
    elif entry.interval_id != schedule.pk or entry.task != SWEEP_TASK:
        entry.interval = schedule
        entry.task = SWEEP_TASK
        entry.crontab = entry.solar = entry.clocked = None
        entry.save()  # save(), not update(): beat notices the change through its signal
        logger.info("the beat entry %r now runs every %s s", SWEEP_ENTRY_NAME, seconds)
    return entry


REQUEUE_ENTRY_NAME = "polos: re-send lost executions"
REQUEUE_TASK = "workflows.executions_requeue"
REQUEUE_EVERY = 5


def executions_requeue_ensure() -> Any:
    """Make the beat entry that re-sends lost executions exist (the data migration creates it;
    a flushed or hand-deleted table loses it). An existing entry is left as the admin set it."""
    from django_celery_beat.models import PeriodicTask

    entry = PeriodicTask.objects.filter(name=REQUEUE_ENTRY_NAME).first()
    if entry is None:
        entry = PeriodicTask.objects.create(
            name=REQUEUE_ENTRY_NAME,
            task=REQUEUE_TASK,
            interval=_interval_schedule(REQUEUE_EVERY),
            enabled=True,
        )
    return entry
