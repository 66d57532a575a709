"""Who may decide an approval. The one decision service asks ``user_may_decide``; lists
(inbox, API, WebSocket) filter with ``decidable_by``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet


def user_may_decide(user: Any, suspension: Any) -> bool:
    """Superusers decide everything; other active staff users may decide (until per-workflow
    approvers are configured)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.is_staff)


def decidable_by(user: Any, suspensions: QuerySet[Any]) -> QuerySet[Any]:
    """``suspensions`` narrowed to those ``user`` may decide (same rule as above)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return suspensions.none()
    if user.is_superuser or user.is_staff:
        return suspensions
    return suspensions.none()
