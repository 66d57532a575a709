"""``polos_site.embedded``: a worker thread in this process runs what is sent through the
app's broker (the in-memory one in embedded mode, Redis in services mode), and stops fast."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from polos_site.celery import app as celery_app
from polos_site.embedded import start_worker_thread
from tests.support import tasks  # noqa: F401 - registers tests.marker with this worker
from tests.support.processes import wait_until


def test_a_worker_thread_runs_sent_tasks_and_stops_within_a_second(
    transactional_db: None, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.log"
    token = uuid.uuid4().hex
    worker = start_worker_thread()
    try:
        celery_app.send_task("tests.marker", args=[str(marker), token])

        wait_until(marker.exists, timeout=10, what="the task to run")
    finally:
        started = time.monotonic()
        worker.stop()
        stopped_in = time.monotonic() - started

    assert marker.read_text().split() == [token, str(os.getpid())]
    assert not worker.is_alive()
    assert stopped_in < 1.5
