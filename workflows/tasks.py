"""Thin Celery tasks: they pass ids and call services. Safe to deliver twice."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task

from workflows import services


@shared_task(
    name="workflows.execution_advance",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=50,
)
def execution_advance_task(self, execution_id: str) -> str:  # type: ignore[no-untyped-def]
    result = services.execution_advance(execution_id=UUID(execution_id))
    if result == services.ADVANCE_BUSY:
        # Queued while the previous run still holds the lease (it is releasing it right now,
        # having just committed a suspend): try again shortly.
        raise self.retry(countdown=0.02)
    return result


@shared_task(name="workflows.suspension_expire", acks_late=True, ignore_result=True)
def suspension_expire_task(suspension_id: int) -> bool:
    return services.suspension_expire(suspension_id=suspension_id)


@shared_task(name="workflows.suspensions_sweep", ignore_result=True)
def suspensions_sweep_task() -> int:
    return services.suspensions_expire_due()


@shared_task(name="workflows.executions_requeue", ignore_result=True)
def executions_requeue_task() -> int:
    return services.executions_requeue_stale()
