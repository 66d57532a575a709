"""Appending to the event log, and pushing what was appended after the commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.db import transaction

from workflows.models import Event

logger = logging.getLogger(__name__)

SUSPEND = "suspend"
RESUME = "resume"
TIMEOUT = "timeout"
EXECUTION_START = "execution_start"
STEP_FINISH = "step_finish"
EXECUTION_FINISH = "execution_finish"


def lifecycle_topic(workflow_id: str, execution_id: UUID | str) -> str:
    return f"workflow/{workflow_id}/{execution_id}"


def step_topic(step_key: str, execution_id: UUID | str) -> str:
    return f"{step_key}/{execution_id}"


def events_push(events: Iterable[dict[str, Any]]) -> None:
    """Send events to live listeners (Channels). Never raises: the log is the truth and
    listeners catch up from it."""
    try:
        from approvals.broadcast import event_push
    except ImportError:  # the console app is not installed
        return
    for event in events:
        try:
            event_push(event)
        except Exception:
            logger.exception("live push of event %s failed", event.get("sequence_id"))


def events_append(events: list[Event]) -> list[Event]:
    """Insert ``events`` in the current transaction; push them to listeners once it commits.

    Call inside ``transaction.atomic()``.
    """
    created = Event.objects.bulk_create(events)
    payload = [event.as_dict() for event in created]
    transaction.on_commit(lambda: events_push(payload))
    return created
