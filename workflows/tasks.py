"""Thin Celery tasks: they pass ids and call services. Safe to deliver twice."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from celery import shared_task
from celery.signals import beat_init, task_postrun, task_prerun
from django.db import close_old_connections, connection

from workflows import services, timers


@task_prerun.connect
@task_postrun.connect
def _connections_recycle(task: Any = None, **kwargs: object) -> None:
    # What Django does around each request: drop connections that broke or outlived
    # CONN_MAX_AGE, and health-check the others before their next use (CELERY_DB_REUSE_MAX in
    # settings keeps Celery from closing them all). Not for a task run eagerly inside the
    # caller's transaction (``.apply()``): that connection is the caller's, mid-transaction.
    if (task is not None and task.request.is_eager) or connection.in_atomic_block:
        return
    close_old_connections()


@shared_task(
    name="workflows.execution_advance",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=50,
)
def execution_advance_task(self, execution_id: str) -> str:
    result = services.execution_advance(execution_id=UUID(execution_id))
    if result == services.ADVANCE_BUSY:
        # Queued while the previous run still holds the lease (it is releasing it right now,
        # having just committed a suspend): try again shortly.
        raise self.retry(countdown=0.02)
    return result


# -- timeouts (see workflows/timers.py) ------------------------------------------------------


@shared_task(name="workflows.suspension_expire", acks_late=True, ignore_result=True)
def suspension_expire_task(suspension_id: int) -> bool:
    """The eta message of one deadline."""
    if services.suspension_expire(suspension_id=suspension_id):
        return True
    timers.suspension_timer_rearm_if_early(suspension_id=suspension_id)
    return False


# A sweep that waited a minute in the queue (workers down, beat up) is dropped: the next one
# does the same work, and a returning worker does not run an hour of them back to back.
@shared_task(name="workflows.suspensions_sweep", ignore_result=True, expires=60)
def suspensions_sweep_task() -> int:
    """Beat's safety net: fire what is due, arm what comes due within the next seconds."""
    fired = services.suspensions_expire_due()
    timers.suspension_timers_arm()
    return fired


@beat_init.connect
def _sweep_entry_sync(sender: object = None, **kwargs: object) -> None:
    # Every beat, embedded thread or ``celery beat``, applies POLOS_SWEEP_INTERVAL as it starts.
    timers.suspension_sweep_ensure()
    timers.executions_requeue_ensure()


@shared_task(name="workflows.executions_requeue", ignore_result=True)
def executions_requeue_task() -> int:
    return services.executions_requeue_stale()
