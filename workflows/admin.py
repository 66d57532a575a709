"""Admin of the engine's models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from approvals.models import ApproverRule, NotificationLog
from workflows import services
from workflows.errors import ServiceError
from workflows.models import (
    ApiKey,
    Event,
    Execution,
    StepOutput,
    Suspension,
    WorkflowDefinition,
)
from workflows.services import api_key_create

# == Workflows, executions, suspensions, notifications ===========================================
# (issue #6, the console.) Everything the engine writes is read-only here: executions change
# only through the services (the cancel and retry actions), and a suspension is decided only
# on the approval page, which calls ``suspension_resolve``.

_INLINE_LIMIT = 200


def _json_block(value: Any) -> str:
    if value is None:
        return "—"
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, default=str),
    )


class WorkflowFilter(admin.SimpleListFilter):
    """Choices from the (small) definitions table, not a DISTINCT over millions of rows."""

    title = "workflow"
    parameter_name = "workflow"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [
            (workflow_id, workflow_id)
            for workflow_id in WorkflowDefinition.objects.values_list("workflow_id", flat=True)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(workflow_id=self.value()) if self.value() else queryset


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by whoever may view the model; nothing is added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _LimitedInlineFormSet(BaseInlineFormSet):
    """The first ``_INLINE_LIMIT`` rows only: a long execution's page stays light."""

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()
        if not queryset.query.is_sliced:
            queryset = queryset[:_INLINE_LIMIT]
            self._queryset = queryset
        return queryset


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    formset = _LimitedInlineFormSet

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApproverRuleInline(admin.TabularInline):
    model = ApproverRule
    extra = 0
    fields = ("step_key", "users", "groups")
    autocomplete_fields = ("users", "groups")
    verbose_name = "approver rule"
    verbose_name_plural = (
        "Approvers (a rule with an empty step key covers every step; "
        "a workflow without rules is decided by active staff users)"
    )


@admin.register(WorkflowDefinition)
class WorkflowDefinitionAdmin(admin.ModelAdmin):
    """Definitions come from the code registry (synced on migrate and at start-up); what is
    edited here is their configuration."""

    list_display = (
        "workflow_id",
        "version",
        "enabled",
        "registered",
        "default_timeout",
        "forbid_self_approval",
        "notifies",
    )
    list_filter = ("enabled", "registered", "forbid_self_approval")
    search_fields = ("workflow_id", "description")
    readonly_fields = (
        "workflow_id",
        "version",
        "description",
        "registered",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("workflow_id", "version", "description", "registered")}),
        ("Behaviour", {"fields": ("enabled", "default_timeout", "forbid_self_approval")}),
        (
            "Notifications",
            {
                "fields": ("notify_approvers_by_email", "notify_emails", "slack_webhook_url"),
                "description": "Sent when an approval of this workflow is created: an e-mail "
                "to the approvers and/or the listed addresses, and a Slack-compatible webhook "
                "post. Delivery is retried; every attempt is in Notification logs.",
            },
        ),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    inlines = (ApproverRuleInline,)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(boolean=True, description="notifies")
    def notifies(self, obj: WorkflowDefinition) -> bool:
        return bool(obj.notify_approvers_by_email or obj.notify_emails or obj.slack_webhook_url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # workflows are registered in code

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only a definition whose code is gone; a registered one would come back on sync.
        return (
            obj is not None and not obj.registered and super().has_delete_permission(request, obj)
        )


class StepOutputInline(_ReadOnlyInline):
    model = StepOutput
    fields = ("step_key", "kind", "status", "started_at", "finished_at", "output", "error")
    verbose_name_plural = f"steps (first {_INLINE_LIMIT})"


class SuspensionInline(_ReadOnlyInline):
    model = Suspension
    fields = ("step_key", "kind", "status", "expires_at", "decided_by", "decided_at")
    show_change_link = True
    verbose_name_plural = f"suspensions (first {_INLINE_LIMIT})"


class EventInline(_ReadOnlyInline):
    model = Event
    fields = ("sequence_id", "event_type", "topic", "created_at", "data")
    ordering = ("sequence_id",)
    verbose_name_plural = f"events (first {_INLINE_LIMIT}; the execution page shows them all)"


@admin.register(Execution)
class ExecutionAdmin(_ReadOnlyAdmin):
    list_display = (
        "id",
        "workflow_id",
        "status",
        "started_by",
        "created_at",
        "finished_at",
        "attempts",
    )
    list_filter = (WorkflowFilter, "status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id",)
    search_help_text = "An execution id, or an idempotency key."
    list_select_related = ("started_by",)
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = (
        "id",
        "workflow_id",
        "workflow_version",
        "status",
        "execution_page",
        "started_by",
        "idempotency_key",
        "attempts",
        "created_at",
        "updated_at",
        "queued_at",
        "finished_at",
        "payload_json",
        "result_json",
        "error_json",
    )
    readonly_fields = fields
    inlines = (StepOutputInline, SuspensionInline, EventInline)
    actions = ("cancel_executions", "retry_executions")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(idempotency_key=term), False

    @admin.display(description="payload")
    def payload_json(self, obj: Execution) -> str:
        return _json_block(obj.payload)

    @admin.display(description="result")
    def result_json(self, obj: Execution) -> str:
        return _json_block(obj.result)

    @admin.display(description="error")
    def error_json(self, obj: Execution) -> str:
        return _json_block(obj.error)

    @admin.display(description="console")
    def execution_page(self, obj: Execution) -> str:
        url = reverse("approvals:execution", args=[obj.pk])
        return format_html('<a href="{}">Open the execution page</a>', url)

    def has_run_actions_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("workflows.change_execution"))

    def _apply(
        self,
        request: HttpRequest,
        executions: QuerySet[Execution],
        service: Callable[..., Any],
        done: str,
    ) -> None:
        succeeded, refused = 0, []
        for execution_id in executions.values_list("pk", flat=True):
            try:
                service(execution_id=execution_id, user=request.user)
            except ServiceError as exc:
                refused.append(str(exc))
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{succeeded} execution(s) {done}.", messages.SUCCESS)
        for reason in refused[:10]:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Cancel the selected executions", permissions=["run_actions"])
    def cancel_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        skipped = queryset.exclude(status__in=Execution.ACTIVE).count()
        if skipped:
            self.message_user(
                request, f"{skipped} finished execution(s) left as they are.", messages.WARNING
            )
        self._apply(
            request,
            queryset.filter(status__in=Execution.ACTIVE),
            services.execution_cancel,
            "cancelled",
        )

    @admin.action(description="Retry the selected failed executions", permissions=["run_actions"])
    def retry_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        skipped = queryset.exclude(status=Execution.Status.FAILED).count()
        if skipped:
            self.message_user(
                request,
                f"{skipped} execution(s) not failed, not retried: only a failed one can be.",
                messages.WARNING,
            )
        self._apply(
            request,
            queryset.filter(status=Execution.Status.FAILED),
            services.execution_retry,
            "queued again",
        )


class SuspensionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (
            ("pending", "Pending"),
            ("overdue", "Overdue (pending past its deadline)"),
            ("decided", "Decided"),
            ("timed_out", "Timed out"),
            ("cancelled", "Cancelled"),
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "pending":
            return queryset.filter(status=Suspension.Status.PENDING)
        if value == "overdue":
            return queryset.filter(status=Suspension.Status.PENDING, expires_at__lt=timezone.now())
        if value == "decided":
            return queryset.filter(status=Suspension.Status.RESUMED)
        if value == "timed_out":
            return queryset.filter(status=Suspension.Status.TIMED_OUT)
        if value == "cancelled":
            return queryset.filter(status=Suspension.Status.CANCELLED)
        return queryset


class NotificationLogInline(_ReadOnlyInline):
    model = NotificationLog
    fields = ("channel", "target", "status", "attempts", "last_error", "created_at", "sent_at")


@admin.register(Suspension)
class SuspensionAdmin(_ReadOnlyAdmin):
    """Read-only, the decision's audit record included: deciding happens on the approval page
    (linked), through the one decision service."""

    list_display = (
        "step_key",
        "workflow_id",
        "execution_link",
        "kind",
        "status",
        "expires_at",
        "decided_by",
        "decided_at",
        "approval_link",
    )
    list_filter = (SuspensionStateFilter, "kind", WorkflowFilter)
    search_fields = ("=step_key",)
    search_help_text = "An execution id, or a step key."
    list_select_related = ("decided_by",)
    ordering = ("-id",)
    show_full_result_count = False
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "workflow_id",
                    "step_key",
                    "kind",
                    "status",
                    "execution_link",
                    "approval_link",
                    "created_at",
                    "expires_at",
                )
            },
        ),
        ("Request", {"fields": ("data_json", "decision_schema_json", "has_default", "default")}),
        (
            "Decision (audit record)",
            {
                "fields": (
                    "decision_json",
                    "decided_by",
                    "decided_at",
                    "decided_ip",
                    "decided_user_agent",
                )
            },
        ),
    )
    readonly_fields = (
        "workflow_id",
        "step_key",
        "kind",
        "status",
        "execution_link",
        "approval_link",
        "created_at",
        "expires_at",
        "data_json",
        "decision_schema_json",
        "has_default",
        "default",
        "decision_json",
        "decided_by",
        "decided_at",
        "decided_ip",
        "decided_user_agent",
    )
    inlines = (NotificationLogInline,)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(execution_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(step_key=term), False

    @admin.display(description="execution")
    def execution_link(self, obj: Suspension) -> str:
        url = reverse("admin:workflows_execution_change", args=[obj.execution_id])
        return format_html('<a href="{}">{}</a>', url, obj.execution_id)

    @admin.display(description="approval page")
    def approval_link(self, obj: Suspension) -> str:
        if obj.kind != Suspension.Kind.APPROVAL:
            return "—"
        url = reverse("approvals:approve_step", args=[obj.execution_id, obj.step_key])
        label = "Decide" if obj.status == Suspension.Status.PENDING else "View"
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="data")
    def data_json(self, obj: Suspension) -> str:
        return _json_block(obj.data)

    @admin.display(description="decision schema")
    def decision_schema_json(self, obj: Suspension) -> str:
        return _json_block(obj.decision_schema)

    @admin.display(description="decision")
    def decision_json(self, obj: Suspension) -> str:
        return _json_block(obj.decision)


@admin.register(NotificationLog)
class NotificationLogAdmin(_ReadOnlyAdmin):
    list_display = (
        "created_at",
        "channel",
        "target",
        "status",
        "attempts",
        "sent_at",
        "suspension_link",
        "last_error_short",
    )
    list_filter = ("status", "channel")
    search_fields = ("target",)
    list_select_related = ("suspension",)
    ordering = ("-id",)
    fields = (
        "suspension_link",
        "channel",
        "target",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
    )
    readonly_fields = fields

    @admin.display(description="suspension")
    def suspension_link(self, obj: NotificationLog) -> str:
        url = reverse("admin:workflows_suspension_change", args=[obj.suspension_id])
        return format_html('<a href="{}">{}</a>', url, obj.suspension)

    @admin.display(description="last error")
    def last_error_short(self, obj: NotificationLog) -> str:
        return obj.last_error[:80]


# == API keys =====================================================================================
# (issue #5, the integration surface; keep the other models' admin above this block)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here or by ``manage.py create_api_key``; the key itself is shown once,
    on creation. Deactivate a key to revoke it."""

    list_display = ("name", "prefix", "user", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    readonly_fields = ("prefix", "created_at", "last_used_at")
    actions = ("deactivate",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ["name", "user"]
        return ["name", "user", "is_active", "prefix", "created_at", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return []
        return ["user", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw_key = api_key_create(name=obj.name, user=obj.user)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = (
            key.pk,
            key.prefix,
            key.key_hash,
            key.created_at,
        )
        obj._state.adding = False
        messages.warning(
            request,
            f"The new API key is {raw_key} — copy it now: it is not stored and will not be "
            "shown again.",
        )

    @admin.action(description="Deactivate the selected keys")
    def deactivate(self, request: HttpRequest, queryset: Any) -> None:
        updated = queryset.update(is_active=False)
        self.message_user(request, f"{updated} key(s) deactivated.", messages.SUCCESS)
