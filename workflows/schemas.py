"""Request and response schemas of the HTTP API (``/api/v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ninja import Field, Schema
from pydantic import BaseModel

ExecutionStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]

# -- errors -----------------------------------------------------------------------------------


class ErrorOut(Schema):
    """Every failure has this shape; some add fields (``errors``, the decision's state)."""

    detail: str
    code: str


class FieldError(Schema):
    field: str
    message: str


class ValidationErrorOut(ErrorOut):
    errors: list[FieldError]


class NotPendingOut(ErrorOut):
    status: str
    decided_by: str | None
    decided_at: datetime | None


# -- workflows and executions -----------------------------------------------------------------


class WorkflowOut(Schema):
    workflow_id: str
    version: str
    description: str
    enabled: bool
    default_timeout: int | None = Field(
        description="Seconds a suspension waits when its step gives no timeout (null: forever)."
    )
    forbid_self_approval: bool
    payload_schema: dict[str, Any] | None = Field(
        description="JSON Schema of the start payload, when the workflow declares one."
    )


# Request bodies are plain pydantic models: ninja's Schema also reads attributes of any
# object, so it would take a JSON array or string for an empty body instead of refusing it.


class RunIn(BaseModel):
    payload: Any = Field(None, description="The start payload, a JSON object.")


class RunOut(Schema):
    execution_id: UUID
    workflow_id: str
    status: str


class ExecutionSummaryOut(Schema):
    execution_id: UUID
    workflow_id: str
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ExecutionListOut(Schema):
    items: list[ExecutionSummaryOut]
    count: int


class StepOut(Schema):
    step_key: str
    kind: str
    status: str
    output: Any
    error: Any
    started_at: datetime | None
    finished_at: datetime | None


class SuspensionOut(Schema):
    step_key: str
    kind: str
    status: str
    data: Any
    expires_at: datetime | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision: Any
    default_applied: bool


class ExecutionOut(Schema):
    execution_id: UUID
    workflow_id: str
    status: str
    payload: Any
    result: Any
    error: Any
    created_at: datetime
    updated_at: datetime
    steps: list[StepOut]
    suspensions: list[SuspensionOut]


# -- decisions ----------------------------------------------------------------------------------


class ResumeIn(BaseModel):
    step_key: str = Field(min_length=1, max_length=200)
    data: Any = Field(
        default_factory=dict, description="The decision, checked against the step's schema."
    )


class ResumeOut(Schema):
    execution_id: UUID
    step_key: str
    status: Literal["resumed"]


class ApprovalOut(Schema):
    execution_id: UUID
    workflow_id: str
    step_key: str
    topic: str
    data: Any
    expires_at: datetime | None
    created_at: datetime
    approval_url: str


class ApprovalListOut(Schema):
    items: list[ApprovalOut]
    has_more: bool
    limit: int
    offset: int


# -- events -------------------------------------------------------------------------------------


class EventOut(Schema):
    sequence_id: int
    topic: str
    event_type: str
    execution_id: UUID | None
    workflow_id: str
    step_key: str
    data: Any
    created_at: datetime


class EventListOut(Schema):
    events: list[EventOut]
    has_more: bool


class PublishIn(BaseModel):
    topic: str = Field(min_length=1, max_length=450)
    event_type: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.:/-]+$")
    data: Any = Field(default_factory=dict)


class PublishOut(Schema):
    sequence_id: int
