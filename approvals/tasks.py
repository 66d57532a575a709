"""Thin Celery tasks of the approval console: they pass ids and call the notifications."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from approvals import notifications


@shared_task(
    name="approvals.notifications_send",
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=notifications.MAX_ATTEMPTS - 1,
)
def notifications_send_task(self: Any, suspension_id: int) -> int:
    """Notify the approvers of a new approval; retried with exponential backoff while some
    target fails. Safe to deliver twice: sent targets are not sent again."""
    final = self.request.retries >= self.max_retries
    to_retry = notifications.notifications_deliver(suspension_id=suspension_id, final=final)
    if to_retry and not final:
        raise self.retry(countdown=notifications.retry_delay(self.request.retries))
    return to_retry
