"""The processes a benchmark runs against: Celery workers (and beat) loading the bench
workflows, and an ASGI server; started and stopped by ``polos_bench``.

Services mode: real child processes on the configured PostgreSQL and Redis. Embedded mode (no
Redis): a worker thread, a beat thread and an in-process server, the only way its in-memory
broker and channel layer reach them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from workflows.bench.workload import READY_DIR_ENV

#: Modules the bench's workers import: its cycle workflows and the timeout workflow.
BENCH_MODULES = ("workflows.bench.workload", "workflows.bench.flows")
POOLS = ("solo", "prefork")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """``DATABASE_URL`` of the database this process uses right now (under pytest, the test
    database), so that child processes share it."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'], safe='')}"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child: same database, Redis and secret key, the bench
    workflows loaded, and DEBUG off (Django records every query under DEBUG, which a benchmark
    must not pay for)."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url()
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    modules = [m for m in env.get("POLOS_WORKFLOW_MODULES", "").split(",") if m.strip()]
    env["POLOS_WORKFLOW_MODULES"] = ",".join(
        [*modules, *(m for m in BENCH_MODULES if m not in modules)]
    )
    env["DJANGO_DEBUG"] = "false"
    # The same key as this process: the server must read the sessions the bench signs.
    env["DJANGO_SECRET_KEY"] = settings.SECRET_KEY
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(extra or {})
    return env


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


@dataclass(frozen=True)
class ProcessStats:
    processes: int
    threads: int
    rss_bytes: int


def process_stats(pids: list[int]) -> ProcessStats:
    """Threads and resident memory of ``pids`` and all their descendants (Linux ``/proc``)."""
    seen: set[int] = set()
    threads = rss = 0
    for pid in pids:
        for member in _descendants(pid):
            if member in seen:
                continue
            seen.add(member)
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{member}/status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if name == "Threads":
                        threads += int(value)
                    elif name == "VmRSS":
                        rss += int(value.split()[0]) * 1024
    return ProcessStats(processes=len(seen), threads=threads, rss_bytes=rss)


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int], *, descendants: bool = True) -> float:
    """User plus system CPU time of ``pids`` (and their descendants) so far (Linux ``/proc``)."""
    total = 0
    seen: set[int] = set()
    for pid in pids:
        for member in _descendants(pid) if descendants else [pid]:
            if member in seen:
                continue
            seen.add(member)
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def database_backend_pids() -> list[int]:
    """The server processes serving this database's connections (PostgreSQL, same host)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend'"
        )
        return [int(row[0]) for row in cursor.fetchall()]


@dataclass
class Workers:
    """What runs the bench's executions: ``count`` worker processes, or (embedded) a thread."""

    count: int
    pool: str
    pids: list[int] = field(default_factory=list)
    kind: str = "process"

    def cpu_seconds(self) -> float | None:
        return None if self.kind == "thread" else cpu_seconds(self.pids)

    def stats(self) -> ProcessStats:
        if self.kind == "thread":
            stats = process_stats([os.getpid()])
            # Only the worker's own thread is the worker's; the rest is this process.
            return ProcessStats(processes=0, threads=1, rss_bytes=stats.rss_bytes)
        return process_stats(self.pids)


def _stop(processes: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "polos_site", "--quiet", *args]


def _tail(log_path: Path, lines: int = 30) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(
    ready_dir: Path, expected: int, processes: list[subprocess.Popen[bytes]], log_path: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while len(list(ready_dir.iterdir())) < expected:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args!r} exited with {process.returncode}:\n{_tail(log_path)}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the bench's workers were not ready within {READY_TIMEOUT} s:\n{_tail(log_path)}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def workers_running(count: int, *, pool: str = "solo", beat: bool = False) -> Iterator[Workers]:
    """``count`` Celery worker processes loading the bench workflows (``solo``: ``count``
    workers of one process each; ``prefork``: one worker with ``count`` child processes), and
    optionally beat; yielded once they consume, stopped (warm shutdown) on exit."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if settings.EMBEDDED:
        with _embedded_workers(beat=beat) as workers:
            yield workers
        return
    with tempfile.TemporaryDirectory(prefix="polos-bench-") as tmp:
        ready_dir = Path(tmp) / "ready"
        ready_dir.mkdir()
        env = child_env({READY_DIR_ENV: str(ready_dir)})
        common = ["-l", "WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]
        if pool == "solo":
            commands = [
                _celery("worker", *common, "--pool", "solo", "-n", f"bench{index}-{os.getpid()}@%h")
                for index in range(count)
            ]
        else:
            commands = [
                _celery(
                    "worker",
                    *common,
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(count),
                    "-n",
                    f"bench-{os.getpid()}@%h",
                )
            ]
        expected = len(commands)
        if beat:
            commands.append(
                _celery(
                    "beat",
                    "-l",
                    "WARNING",
                    "-S",
                    "django",
                    "--max-interval",
                    "1",
                    "-s",
                    str(Path(tmp) / "beat-schedule"),
                )
            )
        processes: list[subprocess.Popen[bytes]] = []
        log_path = Path(tmp) / "workers.log"
        try:
            with log_path.open("wb") as log:
                for command in commands:
                    processes.append(
                        subprocess.Popen(
                            command,
                            cwd=Path(settings.BASE_DIR),
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            _wait_ready(ready_dir, expected, processes[:expected], log_path)
            yield Workers(count=count, pool=pool, pids=[p.pid for p in processes[:expected]])
        finally:
            _stop(processes)


@contextlib.contextmanager
def _embedded_workers(*, beat: bool) -> Iterator[Workers]:
    from polos_site.embedded import start_beat_thread, start_worker_thread

    worker = start_worker_thread()
    beat_handle = start_beat_thread() if beat else None
    try:
        yield Workers(count=1, pool="solo", kind="thread")
    finally:
        if beat_handle is not None:
            beat_handle.stop()
        worker.stop()


@dataclass
class Server:
    host: str
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def server_running() -> Iterator[Server]:
    """The ASGI application (HTTP and WebSockets) under uvicorn: a child process in services
    mode, a thread of this process in embedded mode (start the workers first)."""
    host, port = "127.0.0.1", free_port()
    if settings.EMBEDDED:
        with _embedded_server(host, port):
            yield Server(host, port)
        return
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "polos_site.asgi:application",
        "--lifespan",
        "off",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(
        command,
        cwd=Path(settings.BASE_DIR),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _listening(host, port):
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not listen within {READY_TIMEOUT} s")
            time.sleep(0.05)
        yield Server(host, port)
    finally:
        _stop([process])


@contextlib.contextmanager
def _embedded_server(host: str, port: int) -> Iterator[None]:
    import asyncio

    import uvicorn

    from approvals.broadcast import register_server_loop
    from polos_site.asgi import application

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            # The worker thread's pushes reach the in-memory layer through this loop.
            register_server_loop(asyncio.get_running_loop())
            await super().startup(sockets=sockets)

    server = _Server(
        uvicorn.Config(application, host=host, port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="polos-bench-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.05)
        yield
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        register_server_loop(None)
