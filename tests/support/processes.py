"""Real processes for system tests: ``manage.py polos_run`` and ``celery worker`` subprocesses
on the current test database, in the current mode (embedded or services).

Call these from a test (or fixture) that has the test database set up and whose data is
committed, e.g. one using ``transactional_db``: the children read the same database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings

from tests.support.tasks import BEAT_READY_FILE_ENV, READY_FILE_ENV
from workflows.bench.runtime import database_url

BASE_DIR = Path(settings.BASE_DIR)
TEST_TASKS_MODULE = "tests.support.tasks"
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    """Poll ``predicate`` until it returns something true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def current_database_url() -> str:
    """``DATABASE_URL`` of the database this test run uses (pytest-django's test database)."""
    db = settings.DATABASES["default"]
    # pytest-django sets the test database up only for tests that declare it: without that,
    # a child would run on (and a flush would wipe) the developer's own database.
    assert Path(str(db["NAME"])).name.startswith("test_"), (
        f"{db['NAME']} is not a test database: request transactional_db (or mark the test "
        "django_db(transaction=True)) before starting processes"
    )
    return database_url()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this one plus ``extra``, on the test database, in
    this mode, loading the test-only tasks (besides any other ``POLOS_WORKFLOW_MODULES``)."""
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env["DATABASE_URL"] = current_database_url()
    env.pop("REDIS_URL", None)
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(extra or {})
    env.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-for-child-processes")
    modules = [m for m in env.get("POLOS_WORKFLOW_MODULES", "").split(",") if m.strip()]
    if TEST_TASKS_MODULE not in modules:
        modules.append(TEST_TASKS_MODULE)
    env["POLOS_WORKFLOW_MODULES"] = ",".join(modules)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_pids(pid: int) -> dict[int, str]:
    """The direct children of process ``pid``: their pids and command lines."""
    children: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces: split after its closing parenthesis.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                children[int(entry.name)] = cmdline.decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue  # it exited meanwhile
    return children


@dataclass
class ChildProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """Everything the child wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the child, wait for it, and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.process.args!r} did not stop within {timeout} s:\n{self.output()}"
            ) from None

    def kill_group(self) -> None:
        """Kill whatever is left of the child's process group (its own children included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def _child(command: Sequence[str], env: Mapping[str, str], name: str) -> Iterator[ChildProcess]:
    with tempfile.TemporaryDirectory(prefix=f"polos-{name}-") as tmp:
        log_path = Path(tmp) / "output.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                list(command),
                cwd=BASE_DIR,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so a failed test can still clean up grandchildren.
                start_new_session=True,
            )
        child = ChildProcess(process=process, log_path=log_path)
        try:
            yield child
        finally:
            child.kill_group()


@dataclass
class PolosServer:
    child: ChildProcess
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def output(self) -> str:
        return self.child.output()


def _healthy(server: PolosServer) -> bool:
    if server.child.process.poll() is not None:
        raise AssertionError(
            f"polos_run exited with {server.child.process.returncode}:\n{server.output()}"
        )
    try:
        return httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def polos_run(
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    ready_timeout: float = 60.0,
    expect_clean_exit: bool = True,
) -> Iterator[PolosServer]:
    """``manage.py polos_run`` in a subprocess, yielded once ``/healthz`` answers 200.

    On exit it is stopped with SIGINT, and (``expect_clean_exit``) must exit with 0.
    """
    host = "127.0.0.1"
    port = port or free_port()
    command = [
        sys.executable,
        "manage.py",
        "polos_run",
        "--host",
        host,
        "--port",
        str(port),
        *args,
    ]
    full_env = child_env({"POLOS_BASE_URL": f"http://{host}:{port}", **(env or {})})
    with _child(command, full_env, "run") as child:
        server = PolosServer(child=child, host=host, port=port)
        wait_until(lambda: _healthy(server), timeout=ready_timeout, what="polos_run /healthz")
        yield server
        code = child.stop(signal.SIGINT)
        if expect_clean_exit:
            assert code == 0, f"polos_run exited with {code}:\n{child.output()}"


@contextlib.contextmanager
def celery_worker(
    *,
    args: Sequence[str] = ("--pool", "solo"),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> Iterator[ChildProcess]:
    """``celery -A polos_site worker`` in a subprocess, yielded once it consumes.

    In services mode it shares this process's Redis broker. In embedded mode its broker is
    its own (in memory): only work it enqueues itself reaches it. On exit it is stopped with
    SIGTERM (warm shutdown).
    """
    with tempfile.TemporaryDirectory(prefix="polos-worker-ready-") as tmp:
        ready_file = Path(tmp) / "ready"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "polos_site",
            "worker",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            *args,
        ]
        full_env = child_env({READY_FILE_ENV: str(ready_file), **(env or {})})
        with _child(command, full_env, "worker") as child:

            def ready() -> bool:
                if child.process.poll() is not None:
                    raise AssertionError(f"celery worker exited early:\n{child.output()}")
                return ready_file.exists()

            wait_until(ready, timeout=ready_timeout, what="the celery worker to consume")
            yield child
            child.stop(signal.SIGTERM)


@contextlib.contextmanager
def celery_beat(
    *,
    args: Sequence[str] = ("--max-interval", "1"),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> Iterator[ChildProcess]:
    """``celery -A polos_site beat`` with the database scheduler in a subprocess, yielded once
    it has started (``beat_init`` was sent).

    In services mode it sends to this process's Redis broker; in embedded mode its broker is
    its own. On exit it is stopped with SIGTERM.
    """
    with tempfile.TemporaryDirectory(prefix="polos-beat-ready-") as tmp:
        ready_file = Path(tmp) / "ready"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "polos_site",
            "beat",
            "--loglevel",
            "INFO",
            "--scheduler",
            "django",
            *args,
        ]
        full_env = child_env({BEAT_READY_FILE_ENV: str(ready_file), **(env or {})})
        with _child(command, full_env, "beat") as child:

            def ready() -> bool:
                if child.process.poll() is not None:
                    raise AssertionError(f"celery beat exited early:\n{child.output()}")
                return ready_file.exists()

            wait_until(ready, timeout=ready_timeout, what="celery beat to start")
            yield child
            child.stop(signal.SIGTERM)
