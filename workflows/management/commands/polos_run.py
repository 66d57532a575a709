"""``manage.py polos_run``: migrate, then serve HTTP and WebSockets with a worker and beat.

Embedded mode (no ``REDIS_URL``): one process, the worker and beat as threads beside the
ASGI server. Services mode: ``celery worker`` and ``celery beat`` as child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_USERNAME = "admin"
CHILD_STOP_TIMEOUT = 20.0


def demo_password_file() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo-admin-password"


def demo_admin_password() -> str:
    """The demo admin's password: generated on first use, then kept in a file only we read."""
    path = demo_password_file()
    with contextlib.suppress(FileNotFoundError):
        password = path.read_text().strip()
        if password:
            return password
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def demo_admin_ensure() -> str | None:
    """Create the demo superuser if missing; its password, or None if someone changed it."""
    fresh = not demo_password_file().exists()
    password = demo_admin_password()
    user_model = get_user_model()
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user_model.objects.create_superuser(DEMO_USERNAME, "admin@localhost", password)
        return password
    if fresh:
        # The file was deleted: the new password replaces the lost one.
        user.set_password(password)
        user.save(update_fields=["password"])
        return password
    return password if user.check_password(password) else None


def runtime_startup() -> None:
    """The engine's start-up hook (sync definitions, re-enqueue queued work), if it has one."""
    try:
        services = importlib.import_module("workflows.services")
    except ModuleNotFoundError as exc:
        if exc.name != "workflows.services":
            raise
        return
    hook = getattr(services, "runtime_startup", None)
    if hook is not None:
        hook()


class _Server(uvicorn.Server):
    """uvicorn with the command's own signal handling, announcing itself when it listens, and
    stopping when a child process dies (a server whose worker is gone accepts work that
    nothing runs)."""

    def __init__(
        self, config: uvicorn.Config, *, ready_line: str, stdout: Any, children: _Children | None
    ) -> None:
        super().__init__(config)
        self.ready_line = ready_line
        self.out = stdout
        self.children = children

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The command handles SIGINT/SIGTERM itself; uvicorn's would re-raise them on exit,
        # turning a clean stop into a KeyboardInterrupt or a death by SIGTERM.
        yield

    async def startup(self, sockets: Any = None) -> None:
        from approvals.broadcast import register_server_loop

        register_server_loop(asyncio.get_running_loop())
        await super().startup(sockets=sockets)
        if self.started:
            self.out.write(self.ready_line)
            self.out.flush()

    async def on_tick(self, counter: int) -> bool:
        # uvicorn ticks every 0.1 s; look at the children every half second.
        if (
            self.children is not None
            and counter % 5 == 0
            and not self.should_exit
            and self.children.check()
        ):
            self.should_exit = True
        return await super().on_tick(counter)


class Command(BaseCommand):
    help = (
        "Run Polos: migrate, then the web server (HTTP and WebSockets) with a Celery worker "
        "and beat, as threads (embedded mode) or child processes (services mode)."
    )
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("POLOS_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("POLOS_PORT", "8000")))
        parser.add_argument(
            "--no-demo-user",
            action="store_true",
            help="do not create the demo superuser 'admin' (embedded mode)",
        )

    def handle(self, *args: Any, host: str, port: int, no_demo_user: bool, **options: Any) -> None:
        self.server: _Server | None = None
        self.stopping = False
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            call_command("migrate", interactive=False, verbosity=0)
            if settings.EMBEDDED and not no_demo_user:
                self._announce_demo_admin(host, port)
            runtime_startup()
            if settings.EMBEDDED:
                self._run_embedded(host, port)
            else:
                self._run_services(host, port)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Polos stopped.")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.handle_exit(signum, frame)

    def _announce_demo_admin(self, host: str, port: int) -> None:
        password = demo_admin_ensure()
        if password is None:
            self.stdout.write(
                f"The demo user '{DEMO_USERNAME}' has a password of its own now "
                f"({demo_password_file()} no longer applies)."
            )
        else:
            self.stdout.write(
                f"Log in at http://{host}:{port}/admin/ as {DEMO_USERNAME} / {password}"
            )

    def _serve(self, host: str, port: int, mode: str, children: _Children | None = None) -> None:
        from polos_site.asgi import application

        # Open WebSockets (a consumer blocked on the channel layer) would otherwise hold
        # Ctrl-C's graceful shutdown forever; after this many seconds they are cut.
        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            lifespan="off",
            log_level="info",
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(
            config,
            ready_line=f"Polos is running at http://{host}:{port}/ ({mode})",
            stdout=self.stdout,
            children=children,
        )
        if not self.stopping:
            self.server.run()

    def _run_embedded(self, host: str, port: int) -> None:
        from approvals.broadcast import register_server_loop
        from polos_site.embedded import start_beat_thread, start_worker_thread

        # Both before the server's loop exists: Celery's Django fixup uses the ORM at start.
        worker = start_worker_thread()
        beat = start_beat_thread()
        try:
            self._serve(host, port, "embedded mode")
        finally:
            register_server_loop(None)
            beat.stop()
            worker.stop()

    def _run_services(self, host: str, port: int) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "polos_site"]
        children = _Children(
            {
                "worker": [*celery, "worker", "-l", "INFO", "--concurrency", "2"],
                "beat": [*celery, "beat", "-l", "INFO", "-S", "django"],
            },
            cwd=Path(settings.BASE_DIR),
        )
        try:
            children.start()
            self._serve(host, port, "services mode", children)
        finally:
            children.stop()
        if children.failed:
            raise CommandError(f"{children.failed} exited unexpectedly; Polos stopped")


class _Children:
    def __init__(self, commands: dict[str, Sequence[str]], *, cwd: Path) -> None:
        self.commands = commands
        self.cwd = cwd
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.failed = ""

    def start(self) -> None:
        for name, command in self.commands.items():
            self.processes[name] = subprocess.Popen(command, cwd=self.cwd)

    def check(self) -> bool:
        """True when a child has exited (and records which)."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                self.failed = f"celery {name} (exit code {code})"
                return True
        return False

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
