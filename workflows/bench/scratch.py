"""A scratch database for a benchmark run: created next to the configured one (same server),
migrated, used by this process and the workers it starts, then dropped. Nothing the bench
writes (a million waiting executions, say) outlives the run or lands in real data, and the
waiting scenario's byte counts start from empty tables."""

from __future__ import annotations

import contextlib
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.core.management import call_command
from django.db import connection

#: PostgreSQL's limit on identifiers.
MAX_NAME = 63
_SCRATCH = re.compile(r"_bench_[0-9a-f]{8}(\.sqlite3)?$")


def is_scratch(name: str) -> bool:
    """Whether ``name`` is a database ``scratch_database`` made."""
    return bool(_SCRATCH.search(name))


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """Point the default connection at a new, migrated database; yield its name; drop it."""
    settings_dict = connection.settings_dict
    original = settings_dict["NAME"]
    suffix = f"_bench_{secrets.token_hex(4)}"
    if connection.vendor == "postgresql":
        name = f"{original[: MAX_NAME - len(suffix)]}{suffix}"
        quoted = connection.ops.quote_name(name)
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {quoted}")
        try:
            with _pointed_at(name):
                call_command("migrate", interactive=False, verbosity=0)
                yield name
        finally:
            with connection._nodb_cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        return
    with tempfile.TemporaryDirectory(prefix="polos-bench-") as tmp:
        name = str(Path(tmp) / f"polos{suffix}.sqlite3")
        with _pointed_at(name):
            call_command("migrate", interactive=False, verbosity=0)
            yield name
    assert settings_dict["NAME"] == original


@contextlib.contextmanager
def _pointed_at(name: str) -> Iterator[None]:
    settings_dict = connection.settings_dict
    original = settings_dict["NAME"]
    connection.close()
    settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.close()
        settings_dict["NAME"] = original
