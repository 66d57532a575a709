"""Typed errors of the services; the API, the console and the admin translate them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows.engine.decisions import DecisionInvalid
from workflows.engine.exceptions import PayloadInvalid

__all__ = [
    "DecisionForbidden",
    "DecisionInvalid",
    "ExecutionFinished",
    "ExecutionNotFound",
    "ExecutionNotRetryable",
    "IdempotencyConflict",
    "PayloadInvalid",
    "ServiceError",
    "SuspensionNotFound",
    "SuspensionNotPending",
    "WorkflowDisabled",
    "WorkflowNotFound",
]


class ServiceError(Exception):
    code = "error"


class WorkflowNotFound(ServiceError):
    code = "workflow_not_found"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow {workflow_id!r} is registered")
        self.workflow_id = workflow_id


class WorkflowDisabled(ServiceError):
    code = "workflow_disabled"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is disabled and refuses new starts")
        self.workflow_id = workflow_id


class IdempotencyConflict(ServiceError):
    code = "idempotency_conflict"

    def __init__(self, execution_id: Any) -> None:
        super().__init__(
            f"idempotency key already used by execution {execution_id} with another payload"
        )
        self.execution_id = execution_id


class ExecutionNotFound(ServiceError):
    code = "execution_not_found"

    def __init__(self, execution_id: Any) -> None:
        super().__init__(f"no execution {execution_id}")
        self.execution_id = execution_id


class ExecutionFinished(ServiceError):
    code = "execution_finished"

    def __init__(self, execution_id: Any, status: str) -> None:
        super().__init__(f"execution {execution_id} is already {status}")
        self.execution_id = execution_id
        self.status = status


class SuspensionNotFound(ServiceError):
    code = "suspension_not_found"

    def __init__(self, execution_id: Any, step_key: str, *, reason: str = "") -> None:
        super().__init__(
            reason
            or f"execution {execution_id} has no suspension {step_key!r} (not suspended yet?)"
        )
        self.execution_id = execution_id
        self.step_key = step_key


class SuspensionNotPending(ServiceError):
    code = "not_pending"

    def __init__(
        self, step_key: str, status: str, decided_by: str | None, decided_at: datetime | None
    ) -> None:
        who = f" by {decided_by}" if decided_by else ""
        when = f" at {decided_at.isoformat()}" if decided_at else ""
        super().__init__(f"suspension {step_key!r} is no longer pending: {status}{who}{when}")
        self.step_key = step_key
        self.status = status
        self.decided_by = decided_by
        self.decided_at = decided_at


class ExecutionNotRetryable(ServiceError):
    code = "not_retryable"

    def __init__(self, execution_id: Any, status: str) -> None:
        super().__init__(f"execution {execution_id} is {status}; only a failed one can be retried")
        self.execution_id = execution_id
        self.status = status


class DecisionForbidden(ServiceError):
    code = "forbidden"

    def __init__(self, message: str = "you may not decide this approval") -> None:
        super().__init__(message)
