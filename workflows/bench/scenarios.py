"""The scenarios of ``polos_bench``, on the workflow "step A → suspend → step B → done".

Each takes a ``Bench`` (the options) and returns one flat dict of figures. They start the
workers they need (``runtime.workers_running``) and observe commits from outside
(``observe``). Starts and decisions are made from this process through the services, as the
API and the console make them.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from workflows import services
from workflows.bench import observe
from workflows.bench.runtime import (
    Server,
    Workers,
    cpu_seconds,
    database_backend_pids,
    server_running,
    workers_running,
)
from workflows.bench.stats import ms, ms_percentiles, percentile
from workflows.bench.waiting import waiting_clone, waiting_template
from workflows.bench.workload import BENCH_CYCLE_WORKFLOW, BENCH_REPLAY_WORKFLOW
from workflows.models import Execution

SCENARIOS = ("latency", "throughput", "waiting", "timeouts", "push", "replay")
DEFAULT_N = {
    "latency": 200,
    "throughput": 1000,
    "waiting": 100_000,
    "timeouts": 500,
    "push": 200,
    "replay": 100,
}
WARM_UP_CYCLES = 10
APPROVER = "polos-bench-approver"
STEP_KEY = "approval"


@dataclass
class Bench:
    workers: int = 2
    pool: str = "solo"
    n: int | None = None
    progress: Callable[[str], None] = print
    #: Raw samples (seconds) by name, for the plots.
    samples: dict[str, list[float]] = field(default_factory=dict)

    def count(self, scenario: str) -> int:
        return self.n if self.n is not None else DEFAULT_N[scenario]

    def base(self, scenario: str, workers: Workers | None = None) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "mode": "embedded" if settings.EMBEDDED else "services",
            "database": connection.vendor,
            "workers": workers.count if workers else self.workers,
            "worker_kind": f"{workers.kind}:{workers.pool}" if workers else None,
        }


def approver() -> Any:
    user, _ = get_user_model().objects.get_or_create(username=APPROVER, defaults={"is_staff": True})
    return user


def start(number: int = 0) -> UUID:
    execution, _ = services.execution_start(workflow_id=BENCH_CYCLE_WORKFLOW, payload={"n": number})
    return execution.pk


def decide(execution_id: UUID, user: Any) -> None:
    services.suspension_resolve(
        execution_id=execution_id, step_key=STEP_KEY, data={"approved": True}, user=user
    )


def _cycle(observer: observe.Observer, user: Any, number: int) -> tuple[float, float]:
    """One full cycle; (start → suspended, decision → completed) in seconds."""
    started = time.monotonic()
    execution_id = start(number)
    suspended = observer.wait(execution_id, ["waiting"])
    deciding = time.monotonic()
    decide(execution_id, user)
    done = observer.wait(execution_id, observe.TERMINAL)
    return suspended - started, done - deciding


def _cpu(workers: Workers, backends: list[int]) -> dict[str, float | None]:
    """CPU seconds so far: this process (starts and decisions), the workers, PostgreSQL."""
    return {
        "bench": time.process_time(),
        "workers": workers.cpu_seconds(),
        "postgres": cpu_seconds(backends, descendants=False) if backends else None,
    }


def _completed(ids: list[UUID]) -> int:
    return Execution.objects.filter(pk__in=ids, status=Execution.Status.COMPLETED).count()


# -- latency ------------------------------------------------------------------------------------


def latency(bench: Bench) -> dict[str, Any]:
    n = bench.count("latency")
    user = approver()
    to_suspended, to_completed = [], []
    with (
        workers_running(bench.workers, pool=bench.pool) as workers,
        observe.status_observer() as observer,
    ):
        for number in range(WARM_UP_CYCLES):
            _cycle(observer, user, number)
        bench.progress(f"latency: {n} sequential cycles")
        started = time.monotonic()
        for number in range(n):
            suspended, completed = _cycle(observer, user, number)
            to_suspended.append(suspended)
            to_completed.append(completed)
        elapsed = time.monotonic() - started
    bench.samples["latency_start_to_suspended"] = to_suspended
    bench.samples["latency_decision_to_completed"] = to_completed
    return {
        **bench.base("latency", workers),
        "n": n,
        **ms_percentiles("start_to_suspended", to_suspended),
        **ms_percentiles("decision_to_completed", to_completed),
        "sequential_cycles_per_s": round(n / elapsed, 1),
    }


# -- throughput ---------------------------------------------------------------------------------


def throughput(bench: Bench) -> dict[str, Any]:
    n = bench.count("throughput")
    user = approver()
    with workers_running(bench.workers, pool=bench.pool) as workers:
        with observe.status_observer() as observer:
            for number in range(WARM_UP_CYCLES):
                _cycle(observer, user, number)
        bench.progress(f"throughput: {n} concurrent executions, {workers.count} workers")
        polls = observe.Polls()
        mark = observe.txn_mark()
        backends = database_backend_pids()
        cpu_before = _cpu(workers, backends)
        started = time.monotonic()
        since = timezone.now()
        ids = [start(number) for number in range(n)]
        starts_done = time.monotonic()
        # Counted on the (status, created_at) index, and not too often: the bench's own reads
        # must not be what the database spends its time on.
        mine = Execution.objects.filter(workflow_id=BENCH_CYCLE_WORKFLOW, created_at__gte=since)
        waiting = mine.filter(status=Execution.Status.WAITING)
        all_suspended = polls.wait_count(waiting, n, timeout=60 + n * 0.1)
        for execution_id in ids:
            decide(execution_id, user)
        decisions_done = time.monotonic()
        completed = mine.filter(status=Execution.Status.COMPLETED)
        all_completed = polls.wait_count(completed, n, timeout=60 + n * 0.1)
        cpu_after = _cpu(workers, backends)
        counts = observe.txn_count(mark)
    elapsed = all_completed - started
    figures: dict[str, Any] = {
        **bench.base("throughput", workers),
        "n": n,
        "cycles_per_s": round(n / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "starts_s": round(starts_done - started, 2),
        "all_suspended_s": round(all_suspended - started, 2),
        "decisions_s": round(decisions_done - all_suspended, 2),
        "all_completed_s": round(all_completed - all_suspended, 2),
        "write_txns_per_cycle": None,
        "cluster_xids_per_cycle": None,
        "commits_per_cycle": None,
    }
    # CPU each part spent per cycle: what the machine must supply whatever else runs on it.
    for part, before in cpu_before.items():
        after = cpu_after[part]
        figures[f"cpu_ms_per_cycle_{part}"] = (
            round((after - before) * 1000 / n, 2)
            if before is not None and after is not None
            else None
        )
    if counts is not None:
        figures["write_txns_per_cycle"] = (
            round(counts.writes / n, 2) if counts.writes is not None else None
        )
        figures["cluster_xids_per_cycle"] = round(counts.xids / n, 2)
        # The bench's own polling SELECTs are commits too; they are not the engine's.
        figures["commits_per_cycle"] = round((counts.commits - polls.count) / n, 2)
    return figures


# -- waiting ------------------------------------------------------------------------------------

INBOX_REQUESTS = 200
WAITING_DECISIONS = 20


def waiting(bench: Bench) -> dict[str, Any]:
    count = bench.count("waiting")
    decisions = min(WAITING_DECISIONS, count)
    user = approver()
    _key, raw_key = services.api_key_create(name="polos-bench", user=user)
    observe.engine_tables_empty()
    with workers_running(bench.workers, pool=bench.pool) as workers:
        idle = workers.stats()
        before = observe.tables_bytes()
        bench.progress(f"waiting: inserting {count} waiting executions")
        inserting = time.monotonic()
        template = waiting_template()
        waiting_clone(template, count - 1, bench.progress)
        inserted = time.monotonic() - inserting
        after = observe.tables_bytes()
        pending = Execution.objects.filter(
            workflow_id=BENCH_CYCLE_WORKFLOW, status=Execution.Status.WAITING
        )
        if pending.count() != count:
            raise RuntimeError(f"{pending.count()} executions wait, not {count}")
        time.sleep(1.0)  # let the workers settle: they have nothing to do
        loaded = workers.stats()

        bench.progress(f"waiting: GET /api/v1/approvals x {INBOX_REQUESTS}")
        client = Client(headers={"Authorization": f"Bearer {raw_key}"})
        inbox = []
        for index in range(INBOX_REQUESTS + 5):
            began = time.monotonic()
            response = client.get("/api/v1/approvals")
            took = time.monotonic() - began
            if response.status_code != 200 or len(response.json()["items"]) != min(50, count):
                raise RuntimeError(f"/api/v1/approvals answered {response.status_code}")
            if index >= 5:
                inbox.append(took)

        bench.progress(f"waiting: {decisions} decisions")
        chosen = list(pending.order_by("?").values_list("pk", flat=True)[:decisions])
        decided = []
        with observe.status_observer() as observer:
            for execution_id in chosen:
                began = time.monotonic()
                decide(execution_id, user)
                decided.append(observer.wait(execution_id, observe.TERMINAL) - began)
        if _completed(chosen) != len(chosen):
            raise RuntimeError("a decided waiting execution did not complete")
    bench.samples["waiting_inbox"] = inbox
    sizes: dict[str, Any] = {"db_bytes_per_waiting": None}
    if after is not None and before is not None:
        per = {name: (after[name] - before[name]) / count for name in after}
        sizes["db_bytes_per_waiting"] = round(
            sum(value for name, value in per.items() if ":" not in name)
        )
        sizes["db_index_bytes_per_waiting"] = round(
            sum(value for name, value in per.items() if name.endswith(":indexes"))
        )
        for model in observe.ENGINE_TABLES:
            table = model._meta.db_table
            sizes[f"db_bytes_per_waiting_{model._meta.model_name}"] = round(per[table])
    return {
        **bench.base("waiting", workers),
        "n": count,
        "insert_s": round(inserted, 1),
        "inbox_p50_ms": ms(percentile(inbox, 0.50)),
        "inbox_p95_ms": ms(percentile(inbox, 0.95)),
        "inbox_via": "django.test.Client, in process",
        "decision_to_completed_p50_ms": ms(percentile(decided, 0.50)),
        "worker_processes": loaded.processes,
        "worker_threads": loaded.threads,
        "worker_threads_idle": idle.threads,
        "worker_threads_per_waiting": round((loaded.threads - idle.threads) / count, 6),
        "worker_rss_mb": round(loaded.rss_bytes / 2**20, 1),
        "worker_rss_idle_mb": round(idle.rss_bytes / 2**20, 1),
        **sizes,
    }


# -- timeouts -----------------------------------------------------------------------------------


def timeouts(bench: Bench) -> dict[str, Any]:
    from workflows.bench.timeouts import timeout_lateness_measure, warm_up

    count = bench.count("timeouts")
    # 500 deadlines over 10 s, as the issue asks; a smaller --n shrinks the window with it.
    scale = min(1.0, count / DEFAULT_N["timeouts"])
    # The lead gives the workers time to park them all before the first deadline (5 s, as
    # polos_timeout_lateness does); ``parked_late`` counts those it was too short for.
    spread, lead = max(10.0 * scale, 0.2), 0.5 + 4.5 * scale
    with workers_running(bench.workers, pool=bench.pool, beat=True) as workers:
        warm_up()
        bench.progress(f"timeouts: {count} deadlines over {spread:g} s")
        report = timeout_lateness_measure(count=count, spread=spread, lead=lead)
    return {
        **bench.base("timeouts", workers),
        "n": count,
        "fired": report.fired,
        "early": report.early,
        "parked_late": report.parked_late,
        "spread_s": spread,
        "lateness_p50_s": round(report.fire_ms.p50 / 1000, 3),
        "lateness_p99_s": round(report.fire_ms.p99 / 1000, 3),
        "lateness_max_s": round(report.fire_ms.max / 1000, 3),
        "resumed_p99_s": round(report.resumed_ms.p99 / 1000, 3),
    }


# -- push ---------------------------------------------------------------------------------------


class _Socket:
    """A browser's ``/ws/approvals/`` socket read in a thread: when each event arrived."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.arrived: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="polos-bench-ws", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for message in self.ws:
                now = time.monotonic()
                event = json.loads(message)
                key = (str(event.get("execution_id")), str(event.get("event_type")))
                with self.cond:
                    self.arrived.setdefault(key, now)
                    self.cond.notify_all()
        except ConnectionClosed:
            pass

    def wait(self, execution_id: UUID, event_type: str, timeout: float = 10.0) -> float:
        key = (str(execution_id), event_type)
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.arrived, timeout=timeout):
                raise observe.StatusTimeout(f"no {event_type} of {execution_id} on the socket")
            return self.arrived.pop(key)


def _session_cookie(user: Any) -> str:
    from importlib import import_module

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


@contextmanager
def _socket(server: Server, cookie: str) -> Iterator[_Socket]:
    from websockets.sync.client import connect
    from websockets.typing import Origin

    with connect(
        f"{server.ws_url}/ws/approvals/",
        origin=Origin(server.origin),
        additional_headers={"Cookie": cookie},
        compression=None,
    ) as ws:
        socket = _Socket(ws)
        try:
            yield socket
        finally:
            ws.close()
            socket.thread.join(5)


def push(bench: Bench) -> dict[str, Any]:
    n = bench.count("push")
    user = approver()
    cookie = _session_cookie(user)
    delays = []
    with (
        workers_running(bench.workers, pool=bench.pool) as workers,
        server_running() as server,
        observe.status_observer() as observer,
        _socket(server, cookie) as socket,
    ):
        # Until the first push arrives the socket may not have joined its group yet.
        for number in range(WARM_UP_CYCLES):
            execution_id = start(number)
            observer.wait(execution_id, ["waiting"])
            try:
                socket.wait(execution_id, "suspend", timeout=5.0 if number else 15.0)
            except observe.StatusTimeout:
                if number == WARM_UP_CYCLES - 1:
                    raise
            decide(execution_id, user)
            observer.wait(execution_id, observe.TERMINAL)
        bench.progress(f"push: {n} suspensions pushed to /ws/approvals/")
        for number in range(n):
            execution_id = start(number)
            committed = observer.wait(execution_id, ["waiting"])
            delays.append(socket.wait(execution_id, "suspend") - committed)
            decide(execution_id, user)
            observer.wait(execution_id, observe.TERMINAL)
    bench.samples["push"] = delays
    return {
        **bench.base("push", workers),
        "n": n,
        "push_p50_ms": ms(percentile(delays, 0.50)),
        "push_p95_ms": ms(percentile(delays, 0.95)),
        "push_p99_ms": ms(percentile(delays, 0.99)),
        "push_via": "uvicorn "
        + ("thread" if settings.EMBEDDED else "process")
        + ", channels layer, websockets client",
    }


# -- replay -------------------------------------------------------------------------------------

REPLAY_TIMED = 3


def _replay_ready(steps: int, user: Any) -> UUID:
    """An execution of ``steps`` finished steps, decided, queued: the next advance replays."""
    execution, _ = services.execution_start(
        workflow_id=BENCH_REPLAY_WORKFLOW, payload={"steps": steps}
    )
    services.execution_advance(execution_id=execution.pk)
    decide(execution.pk, user)
    return execution.pk


def _replay_queries(steps: int, user: Any) -> tuple[int, int]:
    """Queries of the decision and of the replaying advance."""
    execution, _ = services.execution_start(
        workflow_id=BENCH_REPLAY_WORKFLOW, payload={"steps": steps}
    )
    services.execution_advance(execution_id=execution.pk)
    with CaptureQueriesContext(connection) as decision:
        decide(execution.pk, user)
    with CaptureQueriesContext(connection) as advance:
        services.execution_advance(execution_id=execution.pk)
    if _completed([execution.pk]) != 1:
        raise RuntimeError("the replayed execution did not complete")
    return len(decision), len(advance)


def replay(bench: Bench) -> dict[str, Any]:
    from workflows.tasks import execution_advance_task

    steps = bench.count("replay")
    few = max(1, steps // 10)
    user = approver()
    bench.progress(f"replay: {steps} finished steps, in this process")
    # This process advances the executions itself (to count the queries); no worker does.
    with mock.patch.object(execution_advance_task, "delay"):
        decision_queries, queries = _replay_queries(steps, user)
        _, queries_few = _replay_queries(few, user)
        timings = []
        for _ in range(REPLAY_TIMED):
            execution_id = _replay_ready(steps, user)
            began = time.monotonic()
            services.execution_advance(execution_id=execution_id)
            timings.append(time.monotonic() - began)
    return {
        **bench.base("replay"),
        "workers": 0,
        "worker_kind": "this process",
        "steps": steps,
        "queries": queries,
        "ms": ms(statistics.median(timings)),
        "queries_with_fewer_steps": queries_few,
        "fewer_steps": few,
        "constant_queries": queries == queries_few,
        "decision_queries": decision_queries,
    }


RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "latency": latency,
    "throughput": throughput,
    "waiting": waiting,
    "timeouts": timeouts,
    "push": push,
    "replay": replay,
}
