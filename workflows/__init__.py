"""Durable workflows: the engine's public API.

``from workflows import workflow, WorkflowContext, StepExecutionError, SuspendTimeout``
"""

from workflows.engine.context import WorkflowContext
from workflows.engine.exceptions import StepExecutionError, SuspendTimeout
from workflows.engine.registry import workflow

__all__ = ["StepExecutionError", "SuspendTimeout", "WorkflowContext", "workflow"]
