"""Who approves which workflow step, and the record of every notification sent about it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from workflows.models import Suspension, WorkflowDefinition


class ApproverRule(models.Model):
    """Users and groups who may decide a workflow's approvals (one step, or every step).

    A workflow without any rule falls back to "active staff users decide" (see
    ``approvals.permissions``).
    """

    workflow = models.ForeignKey(
        WorkflowDefinition, on_delete=models.CASCADE, related_name="approver_rules"
    )
    step_key = models.CharField(
        max_length=200, blank=True, help_text="The step this rule is for; empty: every step."
    )
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="approver_rules"
    )
    groups = models.ManyToManyField(Group, blank=True, related_name="approver_rules")

    class Meta:
        ordering = ["workflow", "step_key", "id"]
        verbose_name = "approver rule"

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.step_key or 'every step'}"


class NotificationLog(models.Model):
    """One notification of one suspension to one target, with every delivery attempt counted."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        #: The suspension was decided (or cancelled) before the notification went out.
        SKIPPED = "skipped"

    suspension = models.ForeignKey(
        Suspension, on_delete=models.CASCADE, related_name="notifications"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    #: An e-mail address, or the webhook's scheme and host (its path is a secret).
    target = models.CharField(max_length=500)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A redelivered task finds the rows it created instead of notifying twice.
            models.UniqueConstraint(
                fields=["suspension", "channel", "target"], name="notification_target"
            )
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="notification_status")]

    def __str__(self) -> str:
        return f"{self.channel} to {self.target} ({self.status})"
