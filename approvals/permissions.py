"""Who may decide an approval. The one decision service asks ``user_may_decide``."""

from __future__ import annotations

from typing import Any


def user_may_decide(user: Any, suspension: Any) -> bool:
    """Superusers decide everything; other active staff users may decide (until per-workflow
    approvers are configured)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.is_staff)
