"""Settings from the environment: embedded defaults, services values, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from polos_site.config import (
    ConfigError,
    base_url,
    broker_url,
    channel_layers,
    database_config,
    env_bool,
    env_float,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parents[2]


def test_embedded_mode_uses_sqlite_under_var_with_a_file_test_database(tmp_path: Path) -> None:
    config = database_config(None, tmp_path)

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "var" / "polos.sqlite3")
    assert config["TEST"]["NAME"] == str(tmp_path / "var" / "test_polos.sqlite3")
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_embedded_mode_uses_in_process_broker_and_channel_layer() -> None:
    assert broker_url(redis_url(None)).startswith("memory://")
    assert channel_layers(redis_url(None))["default"]["BACKEND"] == (
        "channels.layers.InMemoryChannelLayer"
    )


def test_services_mode_uses_postgresql_and_redis(tmp_path: Path) -> None:
    database = database_config("postgres://polos:secret@db.example:5433/polos", tmp_path)
    redis = redis_url("redis://cache.example:6380/2")

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["HOST"], database["PORT"]) == ("polos", "db.example", 5433)
    assert database["OPTIONS"]["connect_timeout"] > 0
    assert broker_url(redis) == "redis://cache.example:6380/2"
    layer = channel_layers(redis)["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    [host] = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://cache.example:6380/2"
    # Longer than channels-redis's 5 s BZPOPMIN, or idle WebSockets die with a read timeout.
    assert host["socket_timeout"] > 5


def test_a_sqlite_url_keeps_the_embedded_locking_options(tmp_path: Path) -> None:
    config = database_config(f"sqlite:///{tmp_path}/other.sqlite3", tmp_path)

    assert config["NAME"] == f"{tmp_path}/other.sqlite3"
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.parametrize(
    ("variable", "parse"),
    [
        ("DATABASE_URL", lambda: database_config("nonsense://x", Path("/tmp"))),
        ("DATABASE_URL", lambda: database_config("postgres://localhost", Path("/tmp"))),
        ("REDIS_URL", lambda: redis_url("http://localhost:6379")),
        ("REDIS_URL", lambda: redis_url("redis://localhost:notaport/0")),
        ("POLOS_BASE_URL", lambda: base_url("ftp://example.com")),
        ("POLOS_BASE_URL", lambda: base_url("example.com")),
        ("DJANGO_DEBUG", lambda: env_bool({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG", False)),
        (
            "POLOS_SWEEP_INTERVAL",
            lambda: env_float({"POLOS_SWEEP_INTERVAL": "x"}, "POLOS_SWEEP_INTERVAL", 1.0),
        ),
    ],
)
def test_a_bad_value_raises_config_error_naming_the_variable(variable: str, parse) -> None:
    with pytest.raises(ConfigError) as caught:
        parse()

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")


def test_base_url_defaults_to_localhost_and_drops_the_trailing_slash() -> None:
    assert base_url(None) == "http://127.0.0.1:8000"
    assert base_url("https://polos.example.com/") == "https://polos.example.com"


def test_manage_py_with_a_bad_database_url_prints_one_line_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["DATABASE_URL"] = "nonsense://x"

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr
