"""``/healthz``: 200 when the database, broker and channel layer answer; 503, fast, when not."""

from __future__ import annotations

import time

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def test_healthz_is_ok_when_everything_answers(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {part: body[part]["ok"] for part in ("database", "broker", "channel_layer")} == {
        "database": True,
        "broker": True,
        "channel_layer": True,
    }
    assert client.get("/healthz/").status_code == 200


def test_healthz_fails_fast_when_redis_is_unreachable(client: Client, settings) -> None:
    settings.EMBEDDED = False
    settings.CELERY_BROKER_URL = UNREACHABLE_REDIS
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [UNREACHABLE_REDIS]},
        }
    }

    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False and body["channel_layer"]["ok"] is False
    assert "6379" not in body["broker"]["detail"]  # it did try the address it was given
    assert elapsed < 5
