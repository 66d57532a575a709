"""Helpers for the HTTP API's tests: users with keys, ninja's test client, SSE parsing."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from ninja.testing import TestClient

from polos_site.api import api
from workflows import services
from workflows.models import Execution

_client: TestClient | None = None


def ninja_client() -> TestClient:
    global _client
    if _client is None:
        _client = TestClient(api)
    return _client


def make_user(username: str, *, staff: bool = False, superuser: bool = False) -> Any:
    return get_user_model().objects.create_user(
        username, password=None, is_staff=staff or superuser, is_superuser=superuser
    )


def key_for(user: Any, name: str = "test key") -> str:
    _key, raw = services.api_key_create(name=name, user=user)
    return raw


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    """ninja's test client, calling as ``approver`` (active staff) unless told otherwise."""

    approver: Any
    approver_key: str
    viewer: Any  # an active user who may not decide anything
    viewer_key: str
    client: TestClient = field(default_factory=ninja_client)

    @classmethod
    def create(cls) -> Api:
        approver = make_user("ann", staff=True)
        viewer = make_user("vic")
        return cls(approver, key_for(approver), viewer, key_for(viewer))

    def _headers(self, key: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        return {**bearer(key or self.approver_key), **(headers or {})}

    def get(self, path: str, *, key: str | None = None, headers: dict[str, str] | None = None):
        return self.client.get(path, headers=self._headers(key, headers))

    def post(
        self,
        path: str,
        json: Any = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        return self.client.post(path, json=json, headers=self._headers(key, headers))


def advance(execution_id: Any) -> Execution:
    """Run the execution in-process until it suspends or ends (what a worker does)."""
    execution_id = uuid.UUID(str(execution_id))
    assert services.execution_advance(execution_id=execution_id) == services.ADVANCE_DONE
    return Execution.objects.get(pk=execution_id)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The events of an SSE text (comments and ``retry:`` skipped): id, event and the
    JSON-decoded data of each."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            events.append(
                {
                    "id": fields.get("id"),
                    "event": fields.get("event"),
                    "data": json.loads(fields["data"]),
                }
            )
    return events


async def sse_open(path: str, *, key: str | None = None, headers: dict[str, str] | None = None):
    """GET ``/api/v1{path}`` through Django's ASGI stack (AsyncClient); the response."""
    from django.test import AsyncClient

    all_headers = {**(bearer(key) if key else {}), **(headers or {})}
    return await AsyncClient().get(f"/api/v1{path}", headers=all_headers)


async def sse_read(
    response: Any, *, until: Any = None, timeout: float = 10.0
) -> tuple[list[dict[str, Any]], str]:
    """Read a streaming response until ``until(events)`` is true or the stream ends; the
    events and the raw text. TimeoutError when neither happens within ``timeout``."""
    import asyncio

    text = ""
    chunks = response.streaming_content

    async def consume() -> None:
        nonlocal text
        async for chunk in chunks:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk
            if until is not None and until(parse_sse(text)):
                return

    try:
        await asyncio.wait_for(consume(), timeout)
    finally:
        await chunks.aclose()
    return parse_sse(text), text
