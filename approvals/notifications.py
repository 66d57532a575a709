"""Telling approvers that a decision waits for them: e-mail and a Slack-compatible webhook.

The engine calls ``notifications_schedule`` inside the transaction that creates an approval;
once it commits, a Celery task (``approvals.tasks.notifications_send_task``) calls
``notifications_deliver`` until every target is sent or the retries run out. Every attempt is
counted in ``NotificationLog``. Nothing here can fail or delay a workflow: errors are logged
and recorded, never raised into the engine.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from approvals.models import ApproverRule, NotificationLog
from workflows.models import Suspension, WorkflowDefinition
from workflows.store import approval_url

logger = logging.getLogger(__name__)

#: Seconds an SMTP conversation or a webhook request may take.
SEND_TIMEOUT = 10.0
#: Tries per target, the first included; retry n waits RETRY_BASE_DELAY * 2**n seconds.
MAX_ATTEMPTS = 5
RETRY_BASE_DELAY = 5.0
RETRY_MAX_DELAY = 300.0

_ERROR_MAX_LENGTH = 2000


def retry_delay(retries: int) -> float:
    """Exponential backoff: the wait before retry number ``retries + 1``."""
    return float(min(RETRY_BASE_DELAY * 2**retries, RETRY_MAX_DELAY))


# -- scheduling (the engine's suspend path: keep it cheap) ---------------------------------


def notifications_configured(workflow_id: str) -> bool:
    """Whether the workflow notifies anyone: one lookup on the definitions' unique index."""
    return (
        WorkflowDefinition.objects.filter(workflow_id=workflow_id)
        .filter(Q(notify_approvers_by_email=True) | ~Q(notify_emails="") | ~Q(slack_webhook_url=""))
        .exists()
    )


def notifications_schedule(*, suspension_id: int, workflow_id: str) -> bool:
    """Queue the notification of a new approval for when the current transaction commits.

    Call inside the transaction that creates the suspension. Returns False, having queued
    nothing, when the workflow has no notification configured.
    """
    if not notifications_configured(workflow_id):
        return False
    transaction.on_commit(lambda: _queue(suspension_id))
    return True


def _queue(suspension_id: int) -> None:
    from approvals.tasks import notifications_send_task

    try:
        notifications_send_task.delay(suspension_id)
    except Exception:
        # The workflow has suspended and committed: a broker hiccup costs a notification only.
        logger.exception("could not queue the notifications of suspension %s", suspension_id)


# -- who is notified ---------------------------------------------------------------------------


def redact_webhook(url: str) -> str:
    """A webhook URL without its path and query, which hold its secret token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


def _split_addresses(raw: str) -> list[str]:
    return [part.strip() for part in raw.replace(",", "\n").splitlines() if part.strip()]


def approver_emails(definition: WorkflowDefinition, suspension: Suspension) -> list[str]:
    """The addresses of those who may decide ``suspension`` per its workflow's rules: the
    users and group members of the rules for its step (or every step); active staff when the
    workflow has no rule (the permissions' fallback). Superusers are not notified unless a
    rule names them; with ``forbid_self_approval`` the starter is not notified either."""
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    all_rules = ApproverRule.objects.filter(workflow=definition)
    if all_rules.exists():
        rules = all_rules.filter(Q(step_key="") | Q(step_key=suspension.step_key))
        users = users.filter(Q(approver_rules__in=rules) | Q(groups__approver_rules__in=rules))
    else:
        users = users.filter(is_staff=True)
    if definition.forbid_self_approval and suspension.execution.started_by_id is not None:
        users = users.exclude(pk=suspension.execution.started_by_id)
    return sorted(set(users.values_list("email", flat=True)))


def notification_targets(
    definition: WorkflowDefinition, suspension: Suspension
) -> list[tuple[str, str]]:
    """``(channel, target)`` pairs, each address once whatever its case."""
    targets: list[tuple[str, str]] = []
    seen: set[str] = set()
    addresses = (
        approver_emails(definition, suspension) if definition.notify_approvers_by_email else []
    )
    for address in [*addresses, *_split_addresses(definition.notify_emails)]:
        if address.lower() not in seen:
            seen.add(address.lower())
            targets.append((NotificationLog.Channel.EMAIL, address))
    if definition.slack_webhook_url:
        targets.append(
            (NotificationLog.Channel.SLACK, redact_webhook(definition.slack_webhook_url))
        )
    return targets


# -- what is said ------------------------------------------------------------------------------


def _summary(suspension: Suspension) -> dict[str, str]:
    execution = suspension.execution
    started_by = execution.started_by.get_username() if execution.started_by else "an integration"
    form = suspension.data.get("_form") if isinstance(suspension.data, dict) else None
    title = form.get("title", "") if isinstance(form, dict) else ""
    return {
        "workflow_id": suspension.workflow_id,
        "step_key": suspension.step_key,
        "execution_id": str(suspension.execution_id),
        "title": str(title or ""),
        "started_by": started_by,
        "started_at": execution.created_at.isoformat(timespec="seconds"),
        "deadline": suspension.expires_at.isoformat(timespec="seconds")
        if suspension.expires_at
        else "none",
        "approval_url": approval_url(suspension.execution_id),
    }


def email_message(suspension: Suspension, address: str, connection: Any) -> EmailMessage:
    s = _summary(suspension)
    lines = [
        "A decision is waiting for you.",
        "",
        *([s["title"], ""] if s["title"] else []),
        f"Workflow:    {s['workflow_id']}",
        f"Step:        {s['step_key']}",
        f"Execution:   {s['execution_id']}",
        f"Started by:  {s['started_by']} at {s['started_at']}",
        f"Deadline:    {s['deadline']}",
        "",
        f"Decide here: {s['approval_url']}",
    ]
    return EmailMessage(
        subject=f"Approval needed: {s['workflow_id']} / {s['step_key']}",
        body="\n".join(lines) + "\n",
        to=[address],
        connection=connection,
    )


def webhook_payload(suspension: Suspension) -> dict[str, str]:
    """Slack shows ``text`` (with the link in it); the other keys are for other consumers."""
    s = _summary(suspension)
    text = (
        f"Approval needed: {s['workflow_id']} / {s['step_key']}"
        f"{' (' + s['title'] + ')' if s['title'] else ''}, started by {s['started_by']}; "
        f"deadline {s['deadline']}. Decide here: {s['approval_url']}"
    )
    return {
        "text": text,
        "approval_url": s["approval_url"],
        "workflow_id": s["workflow_id"],
        "execution_id": s["execution_id"],
        "step_key": s["step_key"],
    }


class WebhookError(Exception):
    pass


def webhook_post(url: str, payload: dict[str, str]) -> None:
    try:
        response = httpx.post(url, json=payload, timeout=SEND_TIMEOUT)
    except httpx.HTTPError as exc:
        # Some transport errors quote the URL, whose path is a secret.
        raise WebhookError(
            f"{type(exc).__name__}: {str(exc).replace(url, redact_webhook(url))}"
        ) from None
    if not response.is_success:
        raise WebhookError(f"HTTP {response.status_code}: {response.text[:200]}")


# -- delivery (the Celery task's side) ---------------------------------------------------------


def _logs_ensure(suspension: Suspension, definition: WorkflowDefinition) -> list[NotificationLog]:
    """This suspension's log rows, creating those of new targets; a redelivered task finds
    the rows of the first delivery (the unique constraint keeps one per target)."""
    existing = set(
        NotificationLog.objects.filter(suspension=suspension).values_list("channel", "target")
    )
    missing = [
        NotificationLog(suspension=suspension, channel=channel, target=target)
        for channel, target in notification_targets(definition, suspension)
        if (channel, target) not in existing
    ]
    if missing:
        NotificationLog.objects.bulk_create(missing, ignore_conflicts=True)
    return list(NotificationLog.objects.filter(suspension=suspension).order_by("id"))


def _claim(log: NotificationLog) -> bool:
    """Count this attempt; False when another delivery of the same task got there first."""
    claimed = NotificationLog.objects.filter(
        pk=log.pk, status=NotificationLog.Status.PENDING, attempts=log.attempts
    ).update(attempts=F("attempts") + 1)
    if claimed:
        log.attempts += 1
    return bool(claimed)


def _skip_pending(suspension_id: int, reason: str) -> None:
    NotificationLog.objects.filter(
        suspension_id=suspension_id, status=NotificationLog.Status.PENDING
    ).update(status=NotificationLog.Status.SKIPPED, last_error=reason)


def _skip_pending_one(log: NotificationLog, reason: str) -> None:
    NotificationLog.objects.filter(pk=log.pk, status=NotificationLog.Status.PENDING).update(
        status=NotificationLog.Status.SKIPPED, last_error=reason
    )


def notifications_deliver(*, suspension_id: int, final: bool = True) -> int:
    """One attempt at every notification of the suspension not sent yet.

    Returns how many failed this time and are worth retrying. With ``final`` no retry
    follows: what fails now is recorded as failed for good. Never raises for a delivery
    failure; a suspension decided meanwhile needs no more notifying.
    """
    suspension = (
        Suspension.objects.select_related("execution__started_by").filter(pk=suspension_id).first()
    )
    if suspension is None:
        return 0
    definition = WorkflowDefinition.objects.filter(workflow_id=suspension.workflow_id).first()
    if suspension.status != Suspension.Status.PENDING or definition is None:
        _skip_pending(suspension_id, f"suspension is {suspension.status}: nobody to ask")
        return 0
    to_retry = 0
    # Each message opens its own SMTP session: one refused address fails only its own row.
    connection = get_connection(timeout=SEND_TIMEOUT)
    try:
        for log in _logs_ensure(suspension, definition):
            if log.status != NotificationLog.Status.PENDING:
                continue
            if log.channel == NotificationLog.Channel.SLACK and (
                not definition.slack_webhook_url
                or redact_webhook(definition.slack_webhook_url) != log.target
            ):
                _skip_pending_one(log, "the webhook is no longer configured")
                continue
            if not _claim(log):
                continue
            try:
                if log.channel == NotificationLog.Channel.EMAIL:
                    if not email_message(suspension, log.target, connection).send():
                        raise RuntimeError("the e-mail backend sent nothing")
                else:
                    webhook_post(definition.slack_webhook_url, webhook_payload(suspension))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX_LENGTH]
                status = NotificationLog.Status.FAILED if final else NotificationLog.Status.PENDING
                NotificationLog.objects.filter(pk=log.pk).update(status=status, last_error=error)
                logger.warning(
                    "notification %s of suspension %s (%s to %s), attempt %s%s: %s",
                    log.pk,
                    suspension_id,
                    log.channel,
                    log.target,
                    log.attempts,
                    ", giving up" if final else "",
                    error,
                )
                if not final:
                    to_retry += 1
            else:
                NotificationLog.objects.filter(pk=log.pk).update(
                    status=NotificationLog.Status.SENT, sent_at=timezone.now()
                )
    finally:
        connection.close()
    return to_retry
