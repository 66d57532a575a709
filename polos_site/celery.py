"""The Celery application; configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polos_site.settings")

app = Celery("polos_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="polos.ping")
def ping(token: str) -> str:
    """A trivial task: health checks and tests use it to prove a worker consumes the broker."""
    return token
