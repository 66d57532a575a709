"""Channels group sends from synchronous code (views, Celery tasks, commands), cheaply.

Embedded mode: ``InMemoryChannelLayer`` lives on the ASGI server's event loop and is not
thread-safe, so sends are handed to that loop (``register_server_loop``). Services mode:
channels-redis keeps connection pools per event loop, so each process keeps one long-lived
loop in a background thread and hands sends to it instead of paying for ``async_to_sync``
(a new loop and a new connection) on every call.

Sends are fire-and-forget and keep their order within a process; ``flush()`` waits for them.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import threading
import uuid
from collections import deque
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

APPROVALS_GROUP = "approvals"
EVENT_MESSAGE_TYPE = "polos.event"
# Events that change what the approval inbox shows.
APPROVALS_EVENT_TYPES = frozenset({"suspend", "resume", "timeout"})

_GROUP_NAME = re.compile(r"^[A-Za-z0-9._-]{1,99}$")


def group_for_execution(execution_id: uuid.UUID | str) -> str:
    """The group of one execution's watchers: ``execution.<32 hex digits>`` for a UUID."""
    try:
        key = (
            execution_id.hex
            if isinstance(execution_id, uuid.UUID)
            else uuid.UUID(str(execution_id)).hex
        )
    except ValueError:
        key = str(execution_id)
    name = f"execution.{key}"
    if not _GROUP_NAME.match(name):
        raise ValueError(f"invalid execution id for a group name: {execution_id!r}")
    return name


class _LoopSender:
    """Sends on one event loop, in submission order, from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._draining = False  # only touched on the loop's thread

    def submit(self, group: str, message: dict[str, Any]) -> None:
        _outstanding.increment()
        try:
            self.loop.call_soon_threadsafe(self._enqueue, group, message)
        except RuntimeError:  # the loop was closed meanwhile
            _outstanding.decrement()
            raise

    def _enqueue(self, group: str, message: dict[str, Any]) -> None:
        self._queue.append((group, message))
        if not self._draining:
            self._draining = True
            self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        try:
            while self._queue:
                group, message = self._queue.popleft()
                try:
                    if layer is not None:
                        await layer.group_send(group, message)
                except Exception:
                    logger.exception("group_send to %s failed", group)
                finally:
                    _outstanding.decrement()
        finally:
            self._draining = False


class _Counter:
    """Sends submitted and not yet done, for ``flush()``."""

    def __init__(self) -> None:
        self._value = 0
        self._cond = threading.Condition()

    def increment(self) -> None:
        with self._cond:
            self._value += 1

    def decrement(self) -> None:
        with self._cond:
            self._value -= 1
            if self._value <= 0:
                self._cond.notify_all()

    def wait_zero(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._value <= 0, timeout=timeout)


_outstanding = _Counter()
_lock = threading.Lock()
_server_sender: _LoopSender | None = None
_background: tuple[int, _LoopSender] | None = None  # (pid, sender): rebuilt after a fork


def register_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Route embedded-mode sends to the ASGI server's loop (``None`` to unregister)."""
    global _server_sender
    with _lock:
        _server_sender = _LoopSender(loop) if loop is not None else None


def _background_sender() -> _LoopSender:
    global _background
    with _lock:
        if _background is None or _background[0] != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="polos-broadcast", daemon=True)
            thread.start()
            _background = (os.getpid(), _LoopSender(loop))
        return _background[1]


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group`` without waiting for delivery; callable from any thread."""
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        sender = _server_sender
        if sender is not None and not sender.loop.is_closed():
            try:
                sender.submit(group, message)
                return
            except RuntimeError:
                pass
        running = _current_loop()
        if running is not None:
            # Sync code on an event loop's thread (async tests): async_to_sync would refuse.
            _LoopSender(running).submit(group, message)
            return
        # No server here (tests, management commands): the layer is this process's own.
        async_to_sync(layer.group_send)(group, message)
        return
    _background_sender().submit(group, message)


def flush(timeout: float = 2.0) -> bool:
    """Wait until the sends submitted so far are done; False on timeout."""
    return _outstanding.wait_zero(timeout)


atexit.register(flush, 2.0)


def event_push(event: dict[str, Any]) -> None:
    """Push a logged event (``Event.as_dict()``) to its execution's watchers, and to the inbox
    when it changes a suspension. The engine calls this after the event's transaction commits.
    """
    message = {"type": EVENT_MESSAGE_TYPE, "event": event}
    if event.get("execution_id"):
        group_send(group_for_execution(event["execution_id"]), message)
    if _concerns_approvals(event):
        group_send(APPROVALS_GROUP, message)


def _concerns_approvals(event: dict[str, Any]) -> bool:
    event_type = event.get("event_type")
    # A "cancel" with a step key is a suspension cancelled: it leaves the inbox.
    return event_type in APPROVALS_EVENT_TYPES or (
        event_type == "cancel" and bool(event.get("step_key"))
    )
