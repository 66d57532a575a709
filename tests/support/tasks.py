"""Test-only Celery tasks, loaded by workers through ``POLOS_WORKFLOW_MODULES``.

A worker that runs them leaves a trace the test can see from outside: a line in a file, and
optionally a live event to the approval inbox's group.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.signals import beat_init, worker_ready

from approvals.broadcast import APPROVALS_GROUP, EVENT_MESSAGE_TYPE, group_send

MARKER_EVENT_TYPE = "test_marker"
# A ``celery worker`` started by tests.support.processes touches this file once it consumes.
READY_FILE_ENV = "POLOS_TEST_WORKER_READY_FILE"


@shared_task(name="tests.marker")
def marker(path: str, token: str = "", broadcast: bool = False) -> None:
    """Append ``token`` (and the worker's pid) as a line to ``path``; optionally push an event
    to the approvals group."""
    with open(path, "a") as handle:
        handle.write(f"{token} {os.getpid()}\n")
    if broadcast:
        event: dict[str, Any] = {"event_type": MARKER_EVENT_TYPE, "token": token}
        group_send(APPROVALS_GROUP, {"type": EVENT_MESSAGE_TYPE, "event": event})


@worker_ready.connect
def _touch_ready_file(**kwargs: Any) -> None:
    path = os.environ.get(READY_FILE_ENV)
    if path:
        Path(path).touch()


# A ``celery beat`` started by tests.support.processes touches this file once it has started.
BEAT_READY_FILE_ENV = "POLOS_TEST_BEAT_READY_FILE"


@beat_init.connect
def _touch_beat_ready_file(**kwargs: Any) -> None:
    path = os.environ.get(BEAT_READY_FILE_ENV)
    if path:
        Path(path).touch()
