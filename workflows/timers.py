"""Suspension deadlines: a precise eta message per suspension, beat as the safety net."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction


def suspension_timer_schedule(*, suspension_id: int, expires_at: datetime) -> None:
    """Ask a worker to expire the suspension at ``expires_at``, once the transaction commits.

    The message may be lost (broker restart, purge): the beat sweep fires it anyway.
    """
    from workflows.tasks import suspension_expire_task

    transaction.on_commit(
        lambda: suspension_expire_task.apply_async(args=[suspension_id], eta=expires_at)
    )
