"""A Celery worker and beat as threads of the current process (embedded mode, system tests).

Start them before any event loop runs in this process: Celery's Django fixup calls the ORM
while the worker starts, which Django refuses inside a running loop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.beat import Service
from celery.utils.imports import symbol_by_name
from celery.worker import WorkController, loops
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer

from .celery import app as celery_app

logger = logging.getLogger(__name__)

BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
STOP_TIMEOUT = 15.0
# How often the worker's loop looks at the stop flag while the broker is quiet.
WAKE_INTERVAL = 0.1


def _synloop_waking(obj: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
    """Celery's blocking loop, but polling the broker for 0.1 s at a time instead of 2 s, so a
    stop request is seen at once."""
    drain = connection.drain_events

    def drain_briefly(timeout: float | None = None, **options: Any) -> Any:
        return drain(timeout=min(timeout or WAKE_INTERVAL, WAKE_INTERVAL), **options)

    connection.drain_events = drain_briefly
    return loops.synloop(obj, connection, *args, **kwargs)


class _ThreadConsumer(Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("hub") is None:  # no event loop (memory transport): Celery picks synloop
            self.loop = _synloop_waking
        super().__init__(*args, **kwargs)


class _ThreadWorkController(WorkController):
    """A worker that tells when its consumer is ready (as celery.contrib.testing does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self.ready.set()


@dataclass
class WorkerHandle:
    worker: WorkController
    thread: threading.Thread
    _stopped: bool = field(default=False, repr=False)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Warm shutdown: the running task finishes; queued messages stay on the broker."""
        if self._stopped:
            return
        self._stopped = True
        # The worker's loop raises WorkerShutdown when it sees the flag; it is process-wide,
        # hence cleared again for the next worker started in this process.
        flags: Any = worker_state
        flags.should_stop = 0
        try:
            self.thread.join(timeout)
        finally:
            flags.should_stop = None
        if self.thread.is_alive():
            raise RuntimeError(f"the embedded Celery worker did not stop within {timeout} s")


def start_worker_thread(
    app: Celery = celery_app,
    *,
    loglevel: str = "WARNING",
    ready_timeout: float = 30.0,
) -> WorkerHandle:
    """Start a solo-pool worker consuming ``app``'s broker in a daemon thread; return once it
    consumes."""
    app.finalize()
    app.set_current()
    app.set_default()
    # Celery's Django fixup runs the system checks at worker start (about a second); the
    # command or test run that starts this thread has its own.
    skip_checks = os.environ.get("CELERY_SKIP_CHECKS")
    os.environ["CELERY_SKIP_CHECKS"] = "1"
    try:
        worker = _ThreadWorkController(
            app=app,
            hostname=f"embedded@{socket.gethostname()}",
            pool="solo",
            concurrency=1,
            loglevel=loglevel,
            ready_callback=None,
            consumer_cls=_ThreadConsumer,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
    finally:
        if skip_checks is None:
            del os.environ["CELERY_SKIP_CHECKS"]
        else:
            os.environ["CELERY_SKIP_CHECKS"] = skip_checks
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    if not worker.ready.wait(ready_timeout):
        raise RuntimeError(f"the embedded Celery worker was not ready within {ready_timeout} s")
    return WorkerHandle(worker=worker, thread=thread)


@dataclass
class BeatHandle:
    service: Service
    thread: threading.Thread

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.service.stop(wait=False)
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError(f"the embedded Celery beat did not stop within {timeout} s")


def start_beat_thread(app: Celery = celery_app, *, scheduler: str = BEAT_SCHEDULER) -> BeatHandle:
    """Start beat with the database scheduler in a daemon thread.

    It wakes at least every second, so new or changed periodic tasks are picked up quickly
    and ``stop()`` returns within about a second.
    """
    # beat_enable_remote_control is off by default: no pidbox thread to stop.
    service = Service(app, max_interval=1, scheduler_cls=symbol_by_name(scheduler))

    def run() -> None:
        app.set_current()
        try:
            service.start()
        except Exception:
            logger.exception("the embedded Celery beat crashed")

    thread = threading.Thread(target=run, name="celery-beat", daemon=True)
    thread.start()
    return BeatHandle(service=service, thread=thread)
