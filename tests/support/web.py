"""Talking to a running server as a browser would: logging in, opening a WebSocket."""

from __future__ import annotations

import re

import httpx
from websockets.sync.client import ClientConnection, connect

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def login_session(
    base_url: str, username: str, password: str, *, path: str = "/accounts/login/"
) -> str:
    """Log in through the login form at ``path``; return the ``sessionid`` cookie."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        page = client.get(path)
        match = _CSRF_FIELD.search(page.text)
        assert match, f"no CSRF token on {path} ({page.status_code})"
        response = client.post(
            path,
            data={"username": username, "password": password, "csrfmiddlewaretoken": match[1]},
        )
        assert response.status_code == 302, f"login as {username} failed: {response.status_code}"
        session = client.cookies.get("sessionid")
        assert session, "no session cookie after logging in"
        return session


def websocket_connect(
    ws_base_url: str, path: str, *, session: str | None = None, origin: str | None = None
) -> ClientConnection:
    """Open a WebSocket as the page at ``origin`` (default: the server itself) would."""
    http_base = ws_base_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    headers = {"Origin": origin or http_base}
    if session:
        headers["Cookie"] = f"sessionid={session}"
    return connect(f"{ws_base_url}{path}", additional_headers=headers, open_timeout=10)
