"""Durable state: executions, their step outputs, suspensions and the event log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class WorkflowDefinition(models.Model):
    """The admin-editable configuration of a workflow registered in code."""

    workflow_id = models.CharField(max_length=200, unique=True)
    version = models.CharField(max_length=50, default="1")
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True, help_text="A disabled workflow refuses new starts.")
    registered = models.BooleanField(
        default=True, help_text="Present in the code registry at the last sync."
    )
    default_timeout = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds a suspension waits when its step gives no timeout (empty: forever).",
    )
    forbid_self_approval = models.BooleanField(
        default=False, help_text="The user who started an execution may not decide it."
    )
    notify_emails = models.TextField(
        blank=True, help_text="Extra addresses notified on suspend, one per line."
    )
    notify_approvers_by_email = models.BooleanField(default=False)
    slack_webhook_url = models.URLField(blank=True, max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow_id"]

    def __str__(self) -> str:
        return self.workflow_id


class Execution(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.WAITING)
    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow_id = models.CharField(max_length=200)
    workflow_version = models.CharField(max_length=50, default="1")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    payload = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # NULL, not "", when absent: the unique constraint applies to given keys only.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    #: When it was last handed to the broker; the sweeper re-sends what stays queued.
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="execution_created"),
            models.Index(fields=["workflow_id", "-created_at"], name="execution_workflow"),
            models.Index(fields=["status", "-created_at"], name="execution_status"),
            models.Index(
                fields=["queued_at"],
                name="execution_to_sweep",
                condition=Q(status__in=["queued", "running"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow_id", "idempotency_key"],
                name="execution_idempotency_key",
                condition=Q(idempotency_key__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class StepOutput(models.Model):
    """A finished step, replayed instead of re-run. A decided suspension is one too."""

    class Status(models.TextChoices):
        COMPLETED = "completed"
        FAILED = "failed"

    # The unique (execution, step_key) index serves lookups by execution too.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="steps", db_index=False
    )
    step_key = models.CharField(max_length=200)
    kind = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=Status.choices)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "step_key"], name="step_output_key")
        ]

    def __str__(self) -> str:
        return f"{self.step_key} ({self.status})"


class Suspension(models.Model):
    """A wait for a human decision ("approval") or for a time ("sleep")."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RESUMED = "resumed"
        TIMED_OUT = "timed_out"
        CANCELLED = "cancelled"

    class Kind(models.TextChoices):
        APPROVAL = "approval"
        SLEEP = "sleep"

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="suspensions", db_index=False
    )
    workflow_id = models.CharField(max_length=200)
    step_key = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.APPROVAL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    data = models.JSONField(default=dict, blank=True)
    decision_schema = models.JSONField(null=True, blank=True)
    schema_ref = models.CharField(max_length=300, blank=True)
    has_default = models.BooleanField(default=False)
    default = models.JSONField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.JSONField(null=True, blank=True)
    decided_ip = models.GenericIPAddressField(null=True, blank=True)
    decided_user_agent = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "step_key"], name="suspension_key")
        ]
        indexes = [
            # The inbox: pending approvals, soonest deadline first.
            models.Index(
                fields=["expires_at", "created_at"],
                name="suspension_inbox",
                condition=Q(status="pending"),
            ),
            # The inbox of an approver whose rules name a few workflows and steps.
            models.Index(
                fields=["workflow_id", "step_key", "expires_at", "created_at"],
                name="suspension_inbox_workflow",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["status", "-decided_at"], name="suspension_history"),
        ]

    def __str__(self) -> str:
        return f"{self.step_key}/{self.execution_id} ({self.status})"

    @property
    def topic(self) -> str:
        return f"{self.step_key}/{self.execution_id}"


class Event(models.Model):
    """The append-only event log; ``sequence_id`` orders it and resumes streams."""

    sequence_id = models.BigAutoField(primary_key=True)
    topic = models.CharField(max_length=450)
    event_type = models.CharField(max_length=50)
    execution = models.ForeignKey(
        Execution,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    workflow_id = models.CharField(max_length=200, blank=True)
    step_key = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sequence_id"]
        indexes = [
            models.Index(fields=["topic", "sequence_id"], name="event_topic"),
            models.Index(fields=["execution", "sequence_id"], name="event_execution"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence_id} {self.event_type} {self.topic}"

    def as_dict(self) -> dict:
        return {
            "sequence_id": self.sequence_id,
            "topic": self.topic,
            "event_type": self.event_type,
            "execution_id": str(self.execution_id) if self.execution_id else None,
            "workflow_id": self.workflow_id,
            "step_key": self.step_key,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }


class ApiKey(models.Model):
    """An API key; only its SHA-256 and a short prefix are stored."""

    name = models.CharField(max_length=200)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
