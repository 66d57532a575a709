"""WebSocket consumers: live events for the approval inbox and for one execution."""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .broadcast import APPROVALS_GROUP, group_for_execution

# Close code for an unauthenticated (or unauthorised) socket; 4000-4999 are the application's.
CLOSE_UNAUTHORIZED = 4401


def may_watch_approvals(user: Any) -> bool:
    """Whether ``user`` may receive the inbox's live events. Runs in a thread: may query."""
    return bool(user.is_authenticated and user.is_active)


def may_watch_execution(user: Any, execution_id: uuid.UUID) -> bool:
    """Whether ``user`` may receive one execution's live events. Runs in a thread: may query."""
    return bool(user.is_authenticated and user.is_active)


class _EventConsumer(AsyncJsonWebsocketConsumer):
    """Joins one group when allowed, and forwards its ``polos.event`` messages as JSON."""

    group_name: str = ""

    async def connect(self) -> None:
        group = await self.authorised_group()
        # Accept before closing: a close before the handshake is a bare HTTP 403, and the
        # client could not tell "log in" from any other failure.
        await self.accept()
        if group is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.group_name = group
        await self.channel_layer.group_add(group, self.channel_name)

    async def authorised_group(self) -> str | None:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; what they send is ignored."""

    async def polos_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


class ApprovalsConsumer(_EventConsumer):
    """``ws/approvals/``: suspensions appearing and being decided, for the inbox."""

    async def authorised_group(self) -> str | None:
        allowed = await database_sync_to_async(may_watch_approvals)(self.scope["user"])
        return APPROVALS_GROUP if allowed else None


class ExecutionConsumer(_EventConsumer):
    """``ws/executions/<uuid>/``: every event of one execution."""

    async def authorised_group(self) -> str | None:
        execution_id: uuid.UUID = self.scope["url_route"]["kwargs"]["execution_id"]
        allowed = await database_sync_to_async(may_watch_execution)(
            self.scope["user"], execution_id
        )
        return group_for_execution(execution_id) if allowed else None
