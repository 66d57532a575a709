"""The approval console's views: they translate HTTP to services and selectors, nothing more."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from approvals import selectors
from approvals.forms import DecisionForm, decision_data, decision_form, verdict_missing
from workflows.errors import (
    DecisionForbidden,
    DecisionInvalid,
    ExecutionNotFound,
    SuspensionNotFound,
    SuspensionNotPending,
)
from workflows.models import Execution, Suspension
from workflows.selectors import execution_get
from workflows.services import suspension_resolve

HTTP_BAD_REQUEST = 400
HTTP_CONFLICT = 409


def _execution_or_404(execution_id: UUID) -> Execution:
    try:
        return execution_get(execution_id=execution_id)
    except ExecutionNotFound:
        raise Http404("No such execution.") from None


def _client_ip(request: HttpRequest) -> str | None:
    # The direct peer: behind a proxy, configure it to set REMOTE_ADDR (not trusted headers).
    return request.META.get("REMOTE_ADDR") or None


# -- inbox ------------------------------------------------------------------------------------


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    page = selectors.inbox_page(user=request.user, page=request.GET.get("page"))
    return render(request, "approvals/inbox.html", {"page": page, "nav": "inbox"})


@login_required
@require_GET
def inbox_fragment(request: HttpRequest) -> HttpResponse:
    """The inbox's list alone: the page swaps it in when a live event arrives."""
    page = selectors.inbox_page(user=request.user, page=request.GET.get("page"))
    response = render(request, "approvals/_inbox_list.html", {"page": page})
    response["Cache-Control"] = "no-store"
    return response


# -- history ----------------------------------------------------------------------------------


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    params = request.GET
    outcome = params.get("decision", "")
    filters = selectors.HistoryFilters(
        workflow=params.get("workflow", "").strip(),
        outcome=outcome if outcome in selectors.HISTORY_OUTCOMES else "",
        approver=params.get("approver", "").strip(),
        date_from=_date(params.get("from")),
        date_to=_date(params.get("to")),
    )
    page = selectors.history_page(user=request.user, filters=filters, page=params.get("page"))
    query = params.copy()
    query.pop("page", None)
    return render(
        request,
        "approvals/history.html",
        {
            "nav": "history",
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "workflows": selectors.history_workflow_choices(),
            "outcomes": [
                (key, selectors.OUTCOME_LABELS[key]) for key in selectors.HISTORY_OUTCOMES
            ],
        },
    )


# -- one execution ----------------------------------------------------------------------------


def _execution_context(request: HttpRequest, execution: Execution) -> dict[str, Any]:
    approvals = selectors.approval_suspensions(execution_id=execution.pk)
    return {
        "execution": execution,
        "timeline": selectors.execution_timeline(execution),
        "pending": [
            s
            for s in approvals
            if s.status == Suspension.Status.PENDING and selectors.may_decide(request.user, s)
        ],
    }


@login_required
@require_GET
def execution_detail(request: HttpRequest, execution_id: UUID) -> HttpResponse:
    execution = _execution_or_404(execution_id)
    if not selectors.may_watch_execution(request.user, execution):
        raise PermissionDenied("You may not see this execution.")
    context = _execution_context(request, execution)
    return render(request, "approvals/execution.html", context)


@login_required
@require_GET
def execution_fragment(request: HttpRequest, execution_id: UUID) -> HttpResponse:
    execution = _execution_or_404(execution_id)
    if not selectors.may_watch_execution(request.user, execution):
        raise PermissionDenied("You may not see this execution.")
    response = render(
        request, "approvals/_execution_body.html", _execution_context(request, execution)
    )
    response["Cache-Control"] = "no-store"
    return response


# -- deciding ---------------------------------------------------------------------------------


def _approval_url(suspension: Suspension) -> str:
    return reverse(
        "approvals:approve_step",
        kwargs={"execution_id": suspension.execution_id, "step_key": suspension.step_key},
    )


def _render_approval(
    request: HttpRequest,
    suspension: Suspension,
    approvals: list[Suspension],
    *,
    form: DecisionForm | None = None,
    conflict: SuspensionNotPending | None = None,
    status: int = 200,
) -> HttpResponse:
    pending = suspension.status == Suspension.Status.PENDING
    if pending and form is None:
        form = decision_form(suspension)
    earlier = [
        s
        for s in approvals
        if s.pk != suspension.pk
        and s.status != Suspension.Status.PENDING
        and (s.created_at, s.pk) < (suspension.created_at, suspension.pk)
    ]
    later = [s for s in approvals if s not in earlier and s.pk != suspension.pk]
    payload = suspension.execution.payload if isinstance(suspension.execution.payload, dict) else {}
    data = suspension.data if isinstance(suspension.data, dict) else {}
    decision = suspension.decision if isinstance(suspension.decision, dict) else {}
    context = {
        "nav": "inbox",
        "approval_url": _approval_url(suspension),
        # What the step adds to the request; the request itself is shown once.
        "step_data": {k: v for k, v in data.items() if k not in payload or payload[k] != v},
        "decision_details": {k: v for k, v in decision.items() if k not in ("approved", "comment")},
        "execution": suspension.execution,
        "suspension": suspension,
        "form": form if pending else None,
        "conflict": conflict,
        "earlier": earlier,
        "later": later,
        "may_watch": selectors.may_watch_execution(request.user, suspension.execution),
    }
    return render(request, "approvals/approve.html", context, status=status)


def _pick_suspension(
    request: HttpRequest, approvals: list[Suspension]
) -> Suspension | list[Suspension]:
    """For the URL without a step key: the one pending approval the user may decide, or the
    list to choose from; with none pending, the latest decided one (its outcome)."""
    pending = [s for s in approvals if s.status == Suspension.Status.PENDING]
    mine = [s for s in pending if selectors.may_decide(request.user, s)]
    if len(mine) == 1:
        return mine[0]
    if len(mine) > 1:
        return mine
    if pending:
        raise PermissionDenied("You may not decide this approval.")
    if not approvals:
        raise Http404("This execution has no approvals.")
    return approvals[-1]


@login_required
@require_http_methods(["GET", "POST"])
def approve(request: HttpRequest, execution_id: UUID, step_key: str | None = None) -> HttpResponse:
    execution = _execution_or_404(execution_id)
    approvals = selectors.approval_suspensions(execution_id=execution.pk)
    for s in approvals:
        s.execution = execution  # one query, not one per suspension
    if step_key is None:
        picked = _pick_suspension(request, approvals)
        if isinstance(picked, list):
            return render(
                request,
                "approvals/choose.html",
                {"execution": execution, "choices": picked, "nav": "inbox"},
            )
        suspension = picked
    else:
        found = next((s for s in approvals if s.step_key == step_key), None)
        if found is None:
            raise Http404("No such approval.")
        suspension = found

    if suspension.status == Suspension.Status.PENDING:
        if not selectors.may_decide(request.user, suspension):
            raise PermissionDenied("You may not decide this approval.")
    elif not selectors.may_view_suspension(request.user, suspension):
        raise PermissionDenied("You may not see this approval.")

    if request.method != "POST":
        return _render_approval(request, suspension, approvals)
    return _decide(request, suspension, approvals)


def _decide(
    request: HttpRequest, suspension: Suspension, approvals: list[Suspension]
) -> HttpResponse:
    form = decision_form(suspension)
    data = decision_data(form, request.POST)
    if verdict_missing(form, data) and suspension.status == Suspension.Status.PENDING:
        form.errors.append("Choose Approve or Reject.")
        return _render_approval(request, suspension, approvals, form=form, status=HTTP_BAD_REQUEST)
    try:
        decided = suspension_resolve(
            execution_id=suspension.execution_id,
            step_key=suspension.step_key,
            data=data,
            user=request.user,
            ip_address=_client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
        )
    except DecisionInvalid as exc:
        form.add_errors(exc.errors)
        return _render_approval(request, suspension, approvals, form=form, status=HTTP_BAD_REQUEST)
    except SuspensionNotPending as exc:
        suspension.refresh_from_db()
        return _render_approval(request, suspension, approvals, conflict=exc, status=HTTP_CONFLICT)
    except DecisionForbidden:
        raise PermissionDenied("You may not decide this approval.") from None
    except SuspensionNotFound:
        raise Http404("No such approval.") from None
    outcome = selectors.suspension_outcome(decided)
    label = {
        selectors.OUTCOME_APPROVED: "You approved",
        selectors.OUTCOME_REJECTED: "You rejected",
    }.get(outcome, "You decided")
    messages.success(request, f"{label} “{suspension.step_key}”. The workflow continues.")
    return redirect(_approval_url(suspension))
