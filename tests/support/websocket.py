"""An in-process WebSocket client for consumers (``channels.testing`` needs daphne, which
this project does not install)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.testing import ApplicationCommunicator


class WebsocketCommunicator(ApplicationCommunicator):
    def __init__(self, application: Any, path: str) -> None:
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": []}
        super().__init__(application, scope)

    async def connect(self, timeout: float = 1) -> bool:
        """True when the socket was accepted."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        return bool(response["type"] == "websocket.accept")

    async def receive_json_from(self, timeout: float = 1) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
