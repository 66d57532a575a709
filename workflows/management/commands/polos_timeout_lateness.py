"""``manage.py polos_timeout_lateness``: measure how late timeouts fire (p50/p99)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from workflows.bench.timeouts import timeout_lateness_measure, warm_up

BENCH_MODULE = "workflows.bench.flows"


@contextlib.contextmanager
def _workers(concurrency: int) -> Iterator[None]:
    """A worker (``concurrency`` processes) and beat loading the bench workflow: threads of
    this process in embedded mode, ``celery`` child processes in services mode."""
    if settings.EMBEDDED:
        from polos_site.embedded import start_beat_thread, start_worker_thread

        worker, beat = start_worker_thread(), start_beat_thread()
        try:
            yield
        finally:
            beat.stop()
            worker.stop()
        return
    env = dict(os.environ)
    modules = [m for m in env.get("POLOS_WORKFLOW_MODULES", "").split(",") if m.strip()]
    env["POLOS_WORKFLOW_MODULES"] = ",".join([*modules, BENCH_MODULE])
    celery = [sys.executable, "-m", "celery", "-A", "polos_site"]
    commands = [
        [*celery, "worker", "-l", "WARNING", "--concurrency", str(concurrency)],
        [*celery, "beat", "-l", "WARNING", "-S", "django", "--max-interval", "1"],
    ]
    children = [
        subprocess.Popen(command, cwd=Path(settings.BASE_DIR), env=env) for command in commands
    ]
    try:
        yield
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


class Command(BaseCommand):
    help = (
        "Start many executions whose suspensions time out over a few seconds and report how "
        "late the timeouts fired (p50/p90/p99/max). Needs a migrated database; with "
        "--start-workers it runs its own worker and beat, otherwise running workers must load "
        f"{BENCH_MODULE} (POLOS_WORKFLOW_MODULES)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=300, help="suspensions (300)")
        parser.add_argument(
            "--spread", type=float, default=10.0, help="seconds the deadlines spread over (10)"
        )
        parser.add_argument(
            "--lead",
            type=float,
            default=5.0,
            help="seconds until the first deadline, for the workers to park them all (5)",
        )
        parser.add_argument(
            "--start-workers",
            type=int,
            default=0,
            metavar="N",
            help="run a worker with N processes and a beat for the measurement "
            "(embedded mode: one worker thread and a beat thread)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        context: contextlib.AbstractContextManager[None] = (
            _workers(options["start_workers"])
            if options["start_workers"]
            else contextlib.nullcontext()
        )
        with context:
            self.stderr.write(f"warm-up: {warm_up():.1f} s")
            report = timeout_lateness_measure(
                count=options["count"], spread=options["spread"], lead=options["lead"]
            )
        self.stdout.write(report.as_json() if options["json"] else report.as_text())
