"""Exceptions of the engine: those user code sees, and the control flow it must not catch."""

from __future__ import annotations

from typing import Any


class WorkflowError(Exception):
    """Base of the engine's errors."""


class StepExecutionError(WorkflowError):
    """A step failed for good (after its retries), on that run and on every replay."""

    def __init__(
        self, message: str, *, step_key: str = "", error_type: str = "", details: Any = None
    ) -> None:
        super().__init__(message)
        self.step_key = step_key
        self.error_type = error_type
        self.details = details


class SuspendTimeout(StepExecutionError):
    """A suspension's deadline passed without a decision (and no ``default`` was given)."""

    def __init__(self, message: str, *, step_key: str = "", expires_at: str | None = None) -> None:
        super().__init__(message, step_key=step_key, error_type="SuspendTimeout")
        self.expires_at = expires_at


class InvalidStepKey(WorkflowError, ValueError):
    """A step key that is empty, not a string, too long, or contains ``/``."""


class DuplicateStepKey(WorkflowError):
    """The same step key was used twice in one execution."""


class NonDeterministicReplay(WorkflowError):
    """A step key was recorded as one kind of step and replayed as another."""


class OutputNotSerializable(WorkflowError, TypeError):
    """A step's output (or the workflow's result) cannot be stored as JSON."""


class WorkflowNotRegistered(WorkflowError, LookupError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow is registered with id {workflow_id!r}")
        self.workflow_id = workflow_id


class PayloadInvalid(WorkflowError, ValueError):
    """The start payload does not match the workflow's payload model."""

    def __init__(self, workflow_id: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"invalid payload for workflow {workflow_id!r}")
        self.workflow_id = workflow_id
        self.errors = errors


class WorkflowInterrupt(BaseException):
    """Stops the workflow function. A BaseException so ``except Exception`` in user code
    cannot swallow it."""


class Suspended(WorkflowInterrupt):
    """The execution is parked (waiting for a decision or a timer); the task returns."""

    def __init__(self, step_key: str) -> None:
        super().__init__(step_key)
        self.step_key = step_key


class ExecutionCancelled(WorkflowInterrupt):
    """The execution was cancelled (or taken over) while it ran; nothing more may run."""
