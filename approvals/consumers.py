"""WebSocket consumers: live events for the approval inbox and for one execution."""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from workflows.models import Suspension

from . import permissions
from .broadcast import APPROVALS_GROUP, group_for_execution

# Close codes (4000-4999 are the application's): not logged in; logged in but not allowed.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


def may_watch_approvals(user: Any) -> bool:
    """Whether ``user`` may open the inbox's socket: any active user (each event is then
    checked against what they may decide). Runs in a thread: may query."""
    return bool(user.is_authenticated and user.is_active)


def may_receive_approval_event(user: Any, event: dict[str, Any]) -> bool:
    """Whether an inbox event about one approval may reach ``user``: only if they may decide
    it. Events about no particular approval pass. Runs in a thread: queries."""
    execution_id, step_key = event.get("execution_id"), event.get("step_key")
    if not execution_id or not step_key:
        return True
    if not (user.is_authenticated and user.is_active):
        return False
    suspension = (
        Suspension.objects.select_related("execution")
        .filter(execution_id=execution_id, step_key=step_key)
        .first()
    )
    if suspension is None:
        # Not (or no longer) in the database: only those who may see everything hear of it.
        return bool(user.is_superuser)
    # A decided approval leaves the inbox of everyone who could have decided it: ask whether
    # the user could decide it, as it was while pending.
    suspension.status = Suspension.Status.PENDING
    return permissions.user_may_decide(user, suspension)


def may_watch_execution(user: Any, execution_id: uuid.UUID) -> bool:
    """Whether ``user`` may receive one execution's live events. Runs in a thread: may query."""
    return permissions.may_watch_execution(user, execution_id)


class _EventConsumer(AsyncJsonWebsocketConsumer):
    """Joins one group when allowed, and forwards its ``polos.event`` messages as JSON."""

    group_name: str = ""

    async def connect(self) -> None:
        group = await self.authorised_group()
        if isinstance(group, str):
            # Joined before the handshake completes: once the client sees the socket open, no
            # event can slip past it (the page reloads its fragment on open, then follows).
            self.group_name = group
            await self.channel_layer.group_add(group, self.channel_name)
        # Accept before closing: a close before the handshake is a bare HTTP 403, and the
        # client could not tell "log in" from "not allowed" from any other failure.
        await self.accept()
        if not isinstance(group, str):
            user = self.scope.get("user")
            await self.close(
                code=CLOSE_FORBIDDEN
                if getattr(user, "is_authenticated", False)
                else CLOSE_UNAUTHORIZED
            )

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

    async def polos_event(self, message: dict[str, Any]) -> None:
        allowed = await database_sync_to_async(may_receive_approval_event)(
            self.scope["user"], message["event"]
        )
        if allowed:
            await self.send_json(message["event"])


class ExecutionConsumer(_EventConsumer):
    """``ws/executions/<uuid>/``: every event of one execution."""

    async def authorised_group(self) -> str | None:
        execution_id: uuid.UUID = self.scope["url_route"]["kwargs"]["execution_id"]
        allowed = await database_sync_to_async(may_watch_execution)(
            self.scope["user"], execution_id
        )
        return group_for_execution(execution_id) if allowed else None
