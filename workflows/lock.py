"""The execution lease: at most one worker runs an execution at a time.

On PostgreSQL a session advisory lock: the server releases it when the holder's connection
dies, so a killed worker never leaves an execution locked. Elsewhere (SQLite, embedded mode:
one process) a process-local lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from django.db import connection

_local_held: set[UUID] = set()
_local_guard = threading.Lock()


def execution_lease_key(execution_id: UUID) -> int:
    """The advisory lock's key (PostgreSQL): the UUID's first 64 bits."""
    return int.from_bytes(execution_id.bytes[:8], "big", signed=True)


def execution_lease_try(execution_id: UUID) -> bool:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [execution_lease_key(execution_id)])
            return bool(cursor.fetchone()[0])
    with _local_guard:
        if execution_id in _local_held:
            return False
        _local_held.add(execution_id)
        return True


def execution_lease_release(execution_id: UUID) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [execution_lease_key(execution_id)])
        return
    with _local_guard:
        _local_held.discard(execution_id)


@contextmanager
def execution_lease(execution_id: UUID) -> Iterator[bool]:
    """Yields whether the lease was taken. Use outside any transaction (session lock)."""
    held = execution_lease_try(execution_id)
    try:
        yield held
    finally:
        if held:
            execution_lease_release(execution_id)


def execution_lease_is_free(execution_id: UUID) -> bool:
    """Whether nobody holds the lease right now (for the sweeper)."""
    if not execution_lease_try(execution_id):
        return False
    execution_lease_release(execution_id)
    return True
