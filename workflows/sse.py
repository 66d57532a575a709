"""Server-Sent Events: an execution's (or a topic's) events from the log, then live.

A stream replays the log from ``after`` and then polls it; the log, not the push, is the
truth, so a client that connects late or reconnects with ``Last-Event-ID`` misses nothing.
Under ASGI each stream is an async generator; Django cancels it when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from workflows import events as ev
from workflows.models import Event, Execution

POLL_INTERVAL = 0.1
HEARTBEAT_INTERVAL = 15.0
#: How often an idle execution stream checks whether its execution ended without it seeing
#: the finish event (it connected after the end, or after the finish event's id).
FINISH_CHECK_INTERVAL = 1.0
BATCH_SIZE = 500
#: Transactions commit out of sequence order on PostgreSQL: an event can become visible after
#: one with a higher ``sequence_id``. Events younger than this are re-checked for such gaps.
SETTLE_WINDOW = timedelta(seconds=5)
#: Clients reconnect after this many milliseconds (the SSE ``retry:`` field).
RETRY_MS = 1000
DEFAULT_MAX_SECONDS = 1800.0


class EventCursor:
    """Which events of one stream were sent, gap-safely.

    ``settled``: every event at or below it that will ever be visible has been sent (or came
    before the stream's start). Events above it that were sent are kept with their creation
    time until they are older than SETTLE_WINDOW, and the range below the highest sent one is
    re-read for late commits meanwhile.
    """

    def __init__(self, events: QuerySet[Event], after: int = 0) -> None:
        self._events = events
        self.settled = after
        self.high = after
        self._recent: dict[int, datetime] = {}

    def _settle(self, now: datetime) -> None:
        horizon = now - SETTLE_WINDOW
        old = [seq for seq, created in self._recent.items() if created <= horizon]
        if old:
            self.settled = max(self.settled, *old)
        self._recent = {seq: at for seq, at in self._recent.items() if seq > self.settled}
        if not self._recent:
            self.settled = self.high

    def poll(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Events not sent yet, in ``sequence_id`` order (late commits first). Sync: ORM."""
        self._settle(now or timezone.now())
        rows = list(
            self._events.filter(sequence_id__gt=self.high).order_by("sequence_id")[:BATCH_SIZE]
        )
        if self._recent:
            late = [
                row
                for row in self._events.filter(
                    sequence_id__gt=self.settled, sequence_id__lt=self.high
                ).order_by("sequence_id")
                if row.sequence_id not in self._recent
            ]
            rows = late + rows
        for row in rows:
            self._recent[row.sequence_id] = row.created_at
            self.high = max(self.high, row.sequence_id)
        return [row.as_dict() for row in rows]


def format_event(event: dict[str, Any]) -> str:
    # Event types are validated on publish; a line break would still end the field, so none.
    event_type = str(event["event_type"]).replace("\r", " ").replace("\n", " ")
    data = json.dumps(event, cls=DjangoJSONEncoder, separators=(",", ":"))
    return f"id: {event['sequence_id']}\nevent: {event_type}\ndata: {data}\n\n"


def _execution_finished(execution_id: UUID) -> bool:
    status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
    return status is None or status in Execution.FINISHED


def _max_seconds() -> float:
    return float(getattr(settings, "POLOS_SSE_MAX_SECONDS", DEFAULT_MAX_SECONDS))


async def event_stream(
    *,
    execution_id: UUID | None = None,
    topic: str | None = None,
    after: int = 0,
    poll_interval: float = POLL_INTERVAL,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    max_seconds: float | None = None,
) -> AsyncIterator[str]:
    """The SSE text of one execution's events (ends after its ``execution_finish``) or of one
    topic's (ends after an ``execution_finish`` on it, i.e. a lifecycle topic)."""
    events = Event.objects.all()
    if execution_id is not None:
        events = events.filter(execution_id=execution_id)
    if topic is not None:
        events = events.filter(topic=topic)
    cursor = EventCursor(events, after)
    poll = sync_to_async(cursor.poll)
    finished = sync_to_async(_execution_finished)
    loop = asyncio.get_running_loop()
    started = last_write = last_finish_check = loop.time()
    limit = _max_seconds() if max_seconds is None else max_seconds
    draining = False

    yield f"retry: {RETRY_MS}\n\n"
    while True:
        batch = await poll()
        for event in batch:
            yield format_event(event)
            if event["event_type"] == ev.EXECUTION_FINISH and (
                execution_id is None or event["execution_id"] == str(execution_id)
            ):
                # Events of the finishing transaction may follow it: drain, then end.
                draining = True
        now = loop.time()
        if batch:
            last_write = now
        if draining:
            if batch:
                continue
            return
        if execution_id is not None and now - last_finish_check >= FINISH_CHECK_INTERVAL:
            last_finish_check = now
            if await finished(execution_id):
                draining = True
                continue
        if now - last_write >= heartbeat_interval:
            yield ": keepalive\n\n"
            last_write = now
        if now - started >= limit:
            return  # the client reconnects with Last-Event-ID
        if len(batch) < BATCH_SIZE:
            await asyncio.sleep(poll_interval)


def event_stream_response(stream: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
