"""Reads for the console: the inbox, the history, one execution's timeline, who may see what."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals import permissions
from workflows.models import Execution, StepOutput, Suspension
from workflows.selectors import execution_steps, execution_suspensions, suspension_list_pending

PAGE_SIZE = 50

# What a decided approval came to, as the history filters and badges name it.
OUTCOME_APPROVED = "approved"
OUTCOME_REJECTED = "rejected"
OUTCOME_DECIDED = "decided"  # a form's decision without an "approved" field
OUTCOME_TIMED_OUT = "timed_out"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_PENDING = "pending"

OUTCOME_LABELS = {
    OUTCOME_APPROVED: "Approved",
    OUTCOME_REJECTED: "Rejected",
    OUTCOME_DECIDED: "Decided",
    OUTCOME_TIMED_OUT: "Timed out",
    OUTCOME_CANCELLED: "Cancelled",
    OUTCOME_PENDING: "Pending",
}
HISTORY_OUTCOMES = (OUTCOME_APPROVED, OUTCOME_REJECTED, OUTCOME_TIMED_OUT, OUTCOME_CANCELLED)


def suspension_outcome(suspension: Suspension) -> str:
    if suspension.status == Suspension.Status.PENDING:
        return OUTCOME_PENDING
    if suspension.status == Suspension.Status.TIMED_OUT:
        return OUTCOME_TIMED_OUT
    if suspension.status == Suspension.Status.CANCELLED:
        return OUTCOME_CANCELLED
    approved = (suspension.decision or {}).get("approved")
    if approved is True:
        return OUTCOME_APPROVED
    if approved is False:
        return OUTCOME_REJECTED
    return OUTCOME_DECIDED


def decision_comment(suspension: Suspension) -> str:
    decision = suspension.decision or {}
    comment = decision.get("comment") if isinstance(decision, dict) else None
    return comment if isinstance(comment, str) else ""


# -- who may see what -----------------------------------------------------------------------


def _active(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def may_decide(user: Any, suspension: Suspension) -> bool:
    return _active(user) and permissions.user_may_decide(user, suspension)


def may_watch_execution(user: Any, execution: Execution) -> bool:
    """Whether ``user`` may see ``execution``'s page and live events."""
    return permissions.may_watch_execution(user, execution)


def may_view_suspension(user: Any, suspension: Suspension) -> bool:
    """Whether ``user`` may see an approval page at all (deciding is checked separately)."""
    if not _active(user):
        return False
    if suspension.decided_by_id is not None and suspension.decided_by_id == user.pk:
        return True
    return may_decide(user, suspension) or may_watch_execution(user, suspension.execution)


# -- inbox ------------------------------------------------------------------------------------


def inbox_suspensions(*, user: Any) -> QuerySet[Suspension]:
    """The pending approvals ``user`` may decide, soonest deadline first."""
    return permissions.decidable_by(user, suspension_list_pending()).select_related(
        "execution", "execution__started_by"
    )


def inbox_page(*, user: Any, page: Any = 1) -> Page[Suspension]:
    return Paginator(inbox_suspensions(user=user), PAGE_SIZE).get_page(page)


# -- history ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilters:
    workflow: str = ""
    outcome: str = ""
    approver: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @property
    def active(self) -> bool:
        return bool(
            self.workflow or self.outcome or self.approver or self.date_from or self.date_to
        )


def _visible_history(user: Any, decided: QuerySet[Suspension]) -> QuerySet[Suspension]:
    """Staff see every decision; others the whole record of each execution they started,
    decided in, or may decide a stage of (so an approver sees the stages before and after
    theirs)."""
    if user.is_superuser or user.is_staff:
        return decided
    approvals = Suspension.objects.filter(kind=Suspension.Kind.APPROVAL)
    involved = permissions.decidable_by(user, approvals).values("execution_id")
    decided_in = approvals.filter(decided_by=user).values("execution_id")
    return decided.filter(
        Q(execution_id__in=involved)
        | Q(execution_id__in=decided_in)
        | Q(execution__started_by=user)
    )


def history_suspensions(*, user: Any, filters: HistoryFilters) -> QuerySet[Suspension]:
    """Decided approvals ``user`` may see, most recent decision first."""
    if not _active(user):
        return Suspension.objects.none()
    decided = Suspension.objects.filter(kind=Suspension.Kind.APPROVAL).exclude(
        status=Suspension.Status.PENDING
    )
    decided = _visible_history(user, decided)
    if filters.workflow:
        decided = decided.filter(workflow_id=filters.workflow)
    if filters.outcome == OUTCOME_APPROVED:
        decided = decided.filter(status=Suspension.Status.RESUMED, decision__approved=True)
    elif filters.outcome == OUTCOME_REJECTED:
        decided = decided.filter(status=Suspension.Status.RESUMED, decision__approved=False)
    elif filters.outcome == OUTCOME_TIMED_OUT:
        decided = decided.filter(status=Suspension.Status.TIMED_OUT)
    elif filters.outcome == OUTCOME_CANCELLED:
        decided = decided.filter(status=Suspension.Status.CANCELLED)
    if filters.approver:
        decided = decided.filter(decided_by__username__iexact=filters.approver)
    tz = timezone.get_current_timezone()
    if filters.date_from:
        decided = decided.filter(
            decided_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=tz)
        )
    if filters.date_to:
        decided = decided.filter(
            decided_at__lt=datetime.combine(
                filters.date_to + timedelta(days=1), time.min, tzinfo=tz
            )
        )
    return decided.select_related("execution", "decided_by").order_by("-decided_at", "-id")


def history_page(*, user: Any, filters: HistoryFilters, page: Any = 1) -> Page[Suspension]:
    return Paginator(history_suspensions(user=user, filters=filters), PAGE_SIZE).get_page(page)


def history_workflow_choices() -> list[str]:
    return list(
        Suspension.objects.filter(kind=Suspension.Kind.APPROVAL)
        .order_by("workflow_id")
        .values_list("workflow_id", flat=True)
        .distinct()
    )


# -- one execution ----------------------------------------------------------------------------


def approval_suspensions(*, execution_id: Any) -> list[Suspension]:
    return [
        s
        for s in execution_suspensions(execution_id=execution_id)
        if s.kind == Suspension.Kind.APPROVAL
    ]


@dataclass
class TimelineItem:
    """One entry of an execution's timeline, in the order things happened."""

    kind: str  # start, step, value, approval, decision, sleep, finish
    tone: str  # neutral, info, waiting, ok, danger, muted
    title: str
    at: datetime | None
    step_key: str = ""
    actor: str = ""
    comment: str = ""
    data: Any = None
    error: Any = None
    deadline: datetime | None = None
    default_applied: bool = False
    link: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_VALUE_KINDS = {"uuid", "now", "random"}
_FINISH: dict[str, tuple[str, str]] = {
    Execution.Status.COMPLETED: ("Completed", "ok"),
    Execution.Status.FAILED: ("Failed", "danger"),
    Execution.Status.CANCELLED: ("Cancelled", "muted"),
}


def _username(user: Any) -> str:
    return user.get_username() if user is not None else ""


def _suspension_items(suspension: Suspension) -> list[TimelineItem]:
    if suspension.kind == Suspension.Kind.SLEEP:
        pending = suspension.status == Suspension.Status.PENDING
        return [
            TimelineItem(
                "sleep",
                "waiting" if pending else "muted",
                "Sleeping" if pending else "Slept",
                suspension.created_at,
                suspension.step_key,
                deadline=suspension.expires_at,
            )
        ]
    items = [
        TimelineItem(
            "approval",
            "waiting" if suspension.status == Suspension.Status.PENDING else "info",
            "Waiting for a decision"
            if suspension.status == Suspension.Status.PENDING
            else "Decision requested",
            suspension.created_at,
            suspension.step_key,
            data=suspension.data,
            deadline=suspension.expires_at,
            extra={"pending": suspension.status == Suspension.Status.PENDING},
        )
    ]
    outcome = suspension_outcome(suspension)
    if outcome == OUTCOME_PENDING:
        return items
    actor = _username(suspension.decided_by)
    decision = TimelineItem(
        "decision",
        {
            OUTCOME_APPROVED: "ok",
            OUTCOME_REJECTED: "danger",
            OUTCOME_DECIDED: "ok",
            OUTCOME_TIMED_OUT: "waiting",
            OUTCOME_CANCELLED: "muted",
        }[outcome],
        OUTCOME_LABELS[outcome],
        suspension.decided_at,
        suspension.step_key,
        actor=actor,
        comment=decision_comment(suspension),
        extra={"outcome": outcome},
    )
    if outcome == OUTCOME_TIMED_OUT:
        decision.default_applied = suspension.has_default
        decision.title = "Timed out, default applied" if suspension.has_default else "Timed out"
        decision.data = suspension.default if suspension.has_default else None
    elif outcome != OUTCOME_CANCELLED:
        decision.data = {
            k: v for k, v in (suspension.decision or {}).items() if k not in ("approved", "comment")
        }
    items.append(decision)
    return items


def _step_item(step: StepOutput) -> TimelineItem:
    if step.kind in _VALUE_KINDS:
        return TimelineItem(
            "value", "muted", f"Recorded {step.kind}", step.finished_at, step.step_key
        )
    failed = step.status == StepOutput.Status.FAILED
    return TimelineItem(
        "step",
        "danger" if failed else "ok",
        "Step failed" if failed else "Step completed",
        step.finished_at or step.started_at,
        step.step_key,
        data=step.output,
        error=step.error,
    )


def execution_timeline(execution: Execution) -> list[TimelineItem]:
    """Start, steps, approvals with their decisions and timeouts, and the end, in time order."""
    suspensions = execution_suspensions(execution_id=execution.pk)
    parked = {s.step_key for s in suspensions}
    entries: list[TimelineItem] = [
        TimelineItem(
            "start",
            "neutral",
            "Started",
            execution.created_at,
            actor=_username(execution.started_by),
            data=execution.payload,
        )
    ]
    for step in execution_steps(execution_id=execution.pk):
        # A decided suspension is recorded as a step too; the suspension tells it better.
        if step.step_key in parked and step.kind in ("suspend", "sleep"):
            continue
        entries.append(_step_item(step))
    for suspension in suspensions:
        entries.extend(_suspension_items(suspension))
    if execution.status in _FINISH:
        title, tone = _FINISH[execution.status]
        entries.append(
            TimelineItem(
                "finish",
                tone,
                title,
                execution.finished_at or execution.updated_at,
                data=execution.result,
                error=execution.error,
            )
        )
    far = execution.created_at
    # Stable: equal times keep the order above (steps in execution order).
    return sorted(entries, key=lambda item: (item.kind == "finish", item.at or far))
