"""``/healthz``: whether the database, the broker and the channel layer answer, quickly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

# Seconds: a dead Redis must make the check fail fast, never hang the probe.
TIMEOUT = 1.0

Check = Callable[[], str]


def _timed(check: Check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        ok = False
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return {"ok": ok, "detail": detail, "latency_ms": latency_ms}


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker() -> str:
    if settings.EMBEDDED:
        return f"in-process ({settings.CELERY_BROKER_URL})"
    with Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=TIMEOUT,
        transport_options={"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT},
    ) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
        # A bare connect may be lazy: make the server answer.
        channel: Any = conn.default_channel
        channel.client.ping()
    return "redis"


def _layer_url() -> str:
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    return host if isinstance(host, str) else host["address"]


def check_channel_layer() -> str:
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if backend.endswith("InMemoryChannelLayer"):
        return "in-process (InMemoryChannelLayer)"
    import redis  # only in services mode: its import costs a noticeable part of start-up

    client = redis.Redis.from_url(
        _layer_url(), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()
    return "redis"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    parts = {
        "database": _timed(check_database),
        "broker": _timed(check_broker),
        "channel_layer": _timed(check_channel_layer),
    }
    healthy = all(part["ok"] for part in parts.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", **parts}, status=200 if healthy else 503
    )
