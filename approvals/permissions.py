"""Who may decide an approval, and who may watch an execution.

The one decision service asks ``user_may_decide``; lists (inbox, API, WebSocket) filter with
``decidable_by``; the execution page and its WebSocket ask ``may_watch_execution``.

The rules:

- approvers are configured per workflow in admin (``ApproverRule``): users and groups, for one
  step key or (blank step key) for every step; a user decides a suspension when a rule of its
  workflow for its step or for every step lists the user or one of the user's groups;
- a workflow without any rule falls back to "active staff users decide", so a fresh install
  and the demo work before anyone configures approvers;
- superusers decide everything, except:
- ``forbid_self_approval`` on the workflow: whoever started the execution may not decide it,
  superusers included (the four-eyes principle has no exception);
- inactive and anonymous users decide nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet

from approvals.models import ApproverRule
from workflows.models import Execution, Suspension, WorkflowDefinition


def _is_active_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def _user_rules(user: Any) -> QuerySet[ApproverRule]:
    """The rules naming ``user`` directly or through one of their groups."""
    return ApproverRule.objects.filter(
        Q(users=user) | Q(groups__in=Group.objects.filter(user=user).values("pk"))
    )


def _started_by_id(suspension: Any) -> int | None:
    if Suspension.execution.is_cached(suspension):
        return suspension.execution.started_by_id
    return (
        Execution.objects.filter(pk=suspension.execution_id)
        .values_list("started_by_id", flat=True)
        .first()
    )


def user_may_decide(user: Any, suspension: Any) -> bool:
    """Whether ``user`` may decide ``suspension`` (the rules in this module's docstring)."""
    if not _is_active_user(user):
        return False
    definition = (
        WorkflowDefinition.objects.filter(workflow_id=suspension.workflow_id)
        .annotate(has_rules=Exists(ApproverRule.objects.filter(workflow_id=OuterRef("pk"))))
        .values("pk", "forbid_self_approval", "has_rules")
        .first()
    )
    if (
        definition is not None
        and definition["forbid_self_approval"]
        and _started_by_id(suspension) == user.pk
    ):
        return False
    if user.is_superuser:
        return True
    if definition is None or not definition["has_rules"]:
        # Nobody configured approvers for this workflow (or it is not synced yet).
        return bool(user.is_staff)
    return (
        _user_rules(user)
        .filter(workflow_id=definition["pk"])
        .filter(Q(step_key="") | Q(step_key=suspension.step_key))
        .exists()
    )


def decidable_by(user: Any, suspensions: QuerySet[Any]) -> QuerySet[Any]:
    """``suspensions`` narrowed to those ``user`` may decide (the same rules).

    The rules are resolved in Python first (two small queries on the rule tables), so the
    filter added to ``suspensions`` is a plain ``workflow_id`` / ``step_key`` condition and,
    where self-approval is forbidden, one uncorrelated ``NOT IN`` on the user's own
    executions: no per-row subquery on the (large) suspensions table.
    """
    if not _is_active_user(user):
        return suspensions.none()
    flagged = WorkflowDefinition.objects.annotate(
        has_rules=Exists(ApproverRule.objects.filter(workflow_id=OuterRef("pk")))
    ).filter(Q(has_rules=True) | Q(forbid_self_approval=True))
    ruled: set[str] = set()
    forbid_self: set[str] = set()
    for workflow_id, has_rules, forbid in flagged.values_list(
        "workflow_id", "has_rules", "forbid_self_approval"
    ):
        if has_rules:
            ruled.add(workflow_id)
        if forbid:
            forbid_self.add(workflow_id)

    if not user.is_superuser:
        whole: set[str] = set()
        steps: dict[str, set[str]] = defaultdict(set)
        for workflow_id, step_key in _user_rules(user).values_list(
            "workflow__workflow_id", "step_key"
        ):
            if step_key:
                steps[workflow_id].add(step_key)
            else:
                whole.add(workflow_id)
        allowed = Q(workflow_id__in=sorted(whole)) if whole else Q(pk__in=[])
        for workflow_id, keys in sorted(steps.items()):
            if workflow_id not in whole:
                allowed |= Q(workflow_id=workflow_id, step_key__in=sorted(keys))
        if user.is_staff:
            allowed |= ~Q(workflow_id__in=sorted(ruled))
        suspensions = suspensions.filter(allowed)

    if forbid_self:
        own = Execution.objects.filter(started_by_id=user.pk, workflow_id__in=sorted(forbid_self))
        suspensions = suspensions.exclude(execution_id__in=own.values("pk"))
    return suspensions


def may_watch_execution(user: Any, execution: Execution | UUID | str) -> bool:
    """Whether ``user`` may see an execution (its page and its live events): superusers,
    staff, whoever started it, and the approvers of its workflow."""
    if not _is_active_user(user):
        return False
    if user.is_superuser or user.is_staff:
        return True
    if isinstance(execution, Execution):
        workflow_id, started_by_id = execution.workflow_id, execution.started_by_id
    else:
        try:
            row = (
                Execution.objects.filter(pk=execution)
                .values_list("workflow_id", "started_by_id")
                .first()
            )
        except (ValueError, ValidationError):  # not a UUID
            return False
        if row is None:
            return False
        workflow_id, started_by_id = row
    if started_by_id is not None and started_by_id == user.pk:
        return True
    return _user_rules(user).filter(workflow__workflow_id=workflow_id).exists()


def watchable_by(user: Any, executions: QuerySet[Execution]) -> QuerySet[Execution]:
    """``executions`` narrowed to those ``user`` may see (same rule as
    ``may_watch_execution``), as a queryset filter: lists and the event log use it."""
    if not _is_active_user(user):
        return executions.none()
    if user.is_superuser or user.is_staff:
        return executions
    workflow_ids = list(_user_rules(user).values_list("workflow__workflow_id", flat=True))
    return executions.filter(Q(started_by=user) | Q(workflow_id__in=workflow_ids))


def may_watch_topic(user: Any, topic: str) -> bool:
    """Whether ``user`` may read a topic's events: a topic that names an execution
    (``{step_key}/{execution_id}``, ``workflow/{workflow_id}/{execution_id}``) follows that
    execution's rule; other topics (published by integrations) are for staff."""
    if not _is_active_user(user):
        return False
    if user.is_superuser or user.is_staff:
        return True
    try:
        execution_id = UUID(topic.rpartition("/")[2])
    except ValueError:
        return False
    return may_watch_execution(user, execution_id)
