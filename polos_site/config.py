"""Turns environment variables into settings values; every bad value is one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url


class ConfigError(Exception):
    """A malformed environment variable. The message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def env_bool(environ: dict[str, str] | Any, name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"expected true/false, got {raw!r}")


def env_float(environ: dict[str, str] | Any, name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(name, f"expected a number >= 0, got {raw!r}")
    return value


# IMMEDIATE takes the write lock at BEGIN, so two writers queue on the timeout instead of
# failing with "database is locked" on lock upgrade.
SQLITE_OPTIONS: dict[str, Any] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


def database_config(url: str | None, base_dir: Path) -> dict[str, Any]:
    """The ``DATABASES['default']`` entry for ``DATABASE_URL`` (None: embedded SQLite)."""
    if not url:
        data_dir = base_dir / "var"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(data_dir / "polos.sqlite3"),
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file (not :memory:) so worker threads and processes see the test data.
            "TEST": {"NAME": str(data_dir / "test_polos.sqlite3")},
        }
    scheme = urlsplit(url).scheme
    if scheme not in {"postgres", "postgresql", "pgsql", "sqlite"}:
        raise ConfigError(
            "DATABASE_URL", f"unsupported scheme {scheme or '(none)'!r}; use postgres://..."
        )
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=600))
    except Exception as exc:
        raise ConfigError("DATABASE_URL", f"cannot parse {url!r}: {exc}") from None
    if config["ENGINE"].endswith("sqlite3"):
        # A SQLite URL (a worker pointed at the test database, say) locks like the default.
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
        config.pop("CONN_MAX_AGE", None)
    if config["ENGINE"].endswith("postgresql"):
        if not config.get("NAME"):
            raise ConfigError("DATABASE_URL", f"no database name in {url!r}")
        config["CONN_HEALTH_CHECKS"] = True
        # An unreachable server fails a request (and /healthz) in seconds, not minutes.
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    return config


def redis_url(raw: str | None) -> str | None:
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ConfigError("REDIS_URL", f"expected redis://host:port/db, got {raw!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("REDIS_URL", f"bad port in {raw!r}") from None
    return raw


def broker_url(redis: str | None) -> str:
    # With a host, kombu does not warn "No hostname was supplied" on every connection.
    return redis or "memory://localhost/"


def channel_layers(redis: str | None) -> dict[str, Any]:
    if not redis:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A consumer waits on BZPOPMIN for 5 s at a time; redis-py's default socket timeout is
    # also 5 s, and a read that loses that race kills every idle WebSocket. Read timeouts
    # must outlast the wait.
    host = {"address": redis, "socket_timeout": 30, "socket_connect_timeout": 5}
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "capacity": 1500, "expiry": 30},
        }
    }


def base_url(raw: str | None) -> str:
    value = (raw or "http://127.0.0.1:8000").rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError("POLOS_BASE_URL", f"expected an absolute http(s) URL, got {raw!r}")
    return value


def csv_list(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]
