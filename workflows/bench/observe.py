"""Watching the database from outside while a benchmark runs: when an execution's status
change is committed, how many write transactions a phase cost, and how many bytes rows take.

On PostgreSQL a temporary trigger sends ``NOTIFY polos_bench`` on the bench workflows' status
changes; PostgreSQL delivers a notification exactly when its transaction commits, so the bench
sees each commit within a fraction of a millisecond without polling. Elsewhere it polls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from django.db import connection

from workflows.models import Event, Execution, StepOutput, Suspension

CHANNEL = "polos_bench"
TRIGGER = "polos_bench_notify"
TERMINAL = ("completed", "failed", "cancelled")

_TRIGGER_SQL = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS {TRIGGER} ON {Execution._meta.db_table};
CREATE TRIGGER {TRIGGER} AFTER UPDATE OF status ON {Execution._meta.db_table}
    FOR EACH ROW WHEN (
        NEW.status IS DISTINCT FROM OLD.status
        AND NEW.status IN ('waiting', 'completed', 'failed', 'cancelled')
        AND NEW.workflow_id LIKE 'polos-bench-%'
    )
    EXECUTE FUNCTION {TRIGGER}();
"""
_UNTRIGGER_SQL = f"""
DROP TRIGGER IF EXISTS {TRIGGER} ON {Execution._meta.db_table};
DROP FUNCTION IF EXISTS {TRIGGER}();
"""


class StatusTimeout(Exception):
    pass


class Observer(Protocol):
    def wait(self, execution_id: UUID, statuses: Iterable[str], timeout: float = 30.0) -> float:
        """Block until the execution's status is one of ``statuses``; the ``time.monotonic()``
        at which that commit was seen."""
        ...


class _PgObserver:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: dict[tuple[str, str], float] = {}

    def _drain(self, timeout: float) -> None:
        for notify in self.conn.notifies(timeout=timeout, stop_after=1):
            now = time.monotonic()
            execution_id, _, status = notify.payload.partition(" ")
            self.seen.setdefault((execution_id, status), now)

    def wait(self, execution_id: UUID, statuses: Iterable[str], timeout: float = 30.0) -> float:
        wanted = [(str(execution_id), status) for status in statuses]
        deadline = time.monotonic() + timeout
        while True:
            for key in wanted:
                if key in self.seen:
                    return self.seen.pop(key)
            left = deadline - time.monotonic()
            if left <= 0:
                raise StatusTimeout(f"{execution_id} did not reach {statuses} in {timeout} s")
            self._drain(left)

    def forget(self) -> None:
        self.seen.clear()


class _PollingObserver:
    interval = 0.002

    def wait(self, execution_id: UUID, statuses: Iterable[str], timeout: float = 30.0) -> float:
        wanted = list(statuses)
        deadline = time.monotonic() + timeout
        while not Execution.objects.filter(pk=execution_id, status__in=wanted).exists():
            if time.monotonic() > deadline:
                raise StatusTimeout(f"{execution_id} did not reach {wanted} in {timeout} s")
            time.sleep(self.interval)
        return time.monotonic()


def _pg_connect(**overrides: Any) -> Any:
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.update(overrides)
    return psycopg.connect(**params)


@contextlib.contextmanager
def status_observer() -> Iterator[Observer]:
    """An Observer of the bench workflows' executions for the duration of the block."""
    if connection.vendor != "postgresql":
        yield _PollingObserver()
        return
    with connection.cursor() as cursor:
        cursor.execute(_TRIGGER_SQL)
    listener = _pg_connect(autocommit=True)
    try:
        listener.execute(f"LISTEN {CHANNEL}")
        yield _PgObserver(listener)
    finally:
        listener.close()
        with connection.cursor() as cursor:
            cursor.execute(_UNTRIGGER_SQL)


class Polls:
    """Polling counts, counting its own queries (each one is a commit the bench, not the
    engine, made)."""

    def __init__(self) -> None:
        self.count = 0

    def wait_count(
        self, queryset: Any, expected: int, *, timeout: float, interval: float = 0.05
    ) -> float:
        """Poll until ``queryset.count() >= expected``; the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while True:
            self.count += 1
            seen = queryset.count()
            if seen >= expected:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise StatusTimeout(f"only {seen} of {expected} within {timeout} s")
            time.sleep(interval)


# -- transactions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TxnMark:
    lsn: str
    next_xid: int
    xact_commit: int


def txn_mark() -> TxnMark | None:
    """Where the server is now: WAL position, next transaction id, this database's commits.
    None on other databases."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_current_wal_lsn()::text,"
            " pg_snapshot_xmax(pg_current_snapshot())::text::bigint,"
            " pg_stat_get_db_xact_commit(oid) FROM pg_database WHERE datname = current_database()"
        )
        lsn, next_xid, commits = cursor.fetchone()
    return TxnMark(lsn=lsn, next_xid=int(next_xid), xact_commit=int(commits))


@dataclass(frozen=True)
class TxnCount:
    #: Transactions that wrote to this database (distinct transaction ids in the WAL with a
    #: block of this database), None when pg_walinspect is not available.
    writes: int | None
    #: Transaction ids assigned in the whole cluster (other databases' writers included).
    xids: int
    #: This database's committed transactions (pg_stat_database), read-only ones included.
    commits: int


def _walinspect_ready() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'")
        if cursor.fetchone():
            return True
        try:
            with connection.cursor() as create:
                create.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        except Exception:
            return False
    return True


def txn_count(before: TxnMark | None) -> TxnCount | None:
    """Transactions since ``before``. Call once the phase's work has committed.

    ``pg_stat_database`` counts every commit (a lone SELECT is one) and the cluster-wide
    transaction ids count other databases' writers too; the WAL names the database of every
    block written, so the distinct transaction ids writing to this one are the write
    transactions exactly, whatever runs next to the bench.
    """
    if before is None:
        return None
    # The statistics collector publishes counters with a short delay.
    time.sleep(0.6)
    after = txn_mark()
    assert after is not None
    writes = None
    if _walinspect_ready():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(DISTINCT xid::text::bigint)"
                " FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)"
                " WHERE xid <> 0 AND block_ref LIKE %s",
                [
                    before.lsn,
                    after.lsn,
                    f"% rel %/{_database_oid()}/%",
                ],
            )
            writes = int(cursor.fetchone()[0])
    return TxnCount(
        writes=writes,
        xids=after.next_xid - before.next_xid,
        commits=after.xact_commit - before.xact_commit,
    )


def _database_oid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


# -- sizes --------------------------------------------------------------------------------------

ENGINE_TABLES = (Execution, StepOutput, Suspension, Event)


def tables_bytes() -> dict[str, int] | None:
    """Bytes of each engine table, with its indexes and TOAST, and of their indexes alone
    (``"<table>:indexes"``) (PostgreSQL), else None."""
    if connection.vendor != "postgresql":
        return None
    tables = [model._meta.db_table for model in ENGINE_TABLES]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, pg_total_relation_size(name::regclass),"
            " pg_indexes_size(name::regclass) FROM unnest(%s::text[]) AS name",
            [tables],
        )
        sizes: dict[str, int] = {}
        for name, total, indexes in cursor.fetchall():
            sizes[name] = int(total)
            sizes[f"{name}:indexes"] = int(indexes)
        return sizes


def engine_tables_empty() -> None:
    """Empty the engine's tables: only ever in the bench's scratch database, so that what one
    scenario measures (bytes per row) does not start from another's leftovers."""
    from workflows.bench.scratch import is_scratch

    if not is_scratch(str(connection.settings_dict["NAME"])):
        raise RuntimeError("refusing to empty the engine's tables outside a scratch database")
    tables = [model._meta.db_table for model in ENGINE_TABLES]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        else:
            for table in reversed(tables):
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - names from the models
