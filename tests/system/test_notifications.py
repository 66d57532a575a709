"""Approvers are notified on suspend: e-mail through a real local SMTP server (aiosmtpd) and a
Slack-compatible webhook on a real local HTTP server; retried with backoff, recorded in
NotificationLog, never in the workflow's way."""

from __future__ import annotations

import email
import json
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tests.support.flows  # noqa: F401 - registers the test workflows
from approvals import notifications
from approvals.models import ApproverRule, NotificationLog
from approvals.tasks import notifications_send_task
from tests.support.processes import free_port, polos_run, wait_until
from workflows import services
from workflows.models import Execution, Suspension, WorkflowDefinition

User = get_user_model()


# -- real servers ------------------------------------------------------------------------------


class SmtpSink:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def recipients(self) -> list[str]:
        return sorted(rcpt for rcpts, _ in self.messages for rcpt in rcpts)


@pytest.fixture
def smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server, settings) -> SmtpSink:
    """The Django e-mail settings pointed at the local SMTP server."""
    sink, port = smtp_server
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    return sink


class Webhook:
    """A local stand-in for Slack: answers each POST with the next of ``statuses`` (then 200)
    and keeps the JSON bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append(json.loads(body))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"invalid_payload")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T00/B00/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Any]:
    hooks: list[Webhook] = []

    def make(*statuses: int) -> Webhook:
        hooks.append(Webhook(list(statuses)))
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.close()


# -- helpers -----------------------------------------------------------------------------------


def configure(workflow_id: str = "test-approval", **changes: Any) -> WorkflowDefinition:
    definition, _ = WorkflowDefinition.objects.get_or_create(workflow_id=workflow_id)
    WorkflowDefinition.objects.filter(pk=definition.pk).update(**changes)
    definition.refresh_from_db()
    return definition


def suspended(workflow_id: str = "test-approval", user: Any = None) -> Suspension:
    execution, _ = services.execution_start(workflow_id=workflow_id, payload={}, user=user)
    services.execution_advance(execution_id=execution.pk)
    return Suspension.objects.get(execution=execution, status=Suspension.Status.PENDING)


def deliver(suspension: Suspension) -> None:
    """What the worker does with the queued task, retries included (eagerly: no waiting)."""
    notifications_send_task.apply(args=[suspension.pk])


def logs(suspension: Suspension) -> dict[tuple[str, str], tuple[str, int]]:
    return {
        (log.channel, log.target): (log.status, log.attempts)
        for log in NotificationLog.objects.filter(suspension=suspension)
    }


def body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


# -- in-process: the real servers, the task applied directly -----------------------------------


@pytest.mark.django_db
def test_a_suspend_queues_the_notification_after_commit_only_when_configured(
    django_capture_on_commit_callbacks,
):
    configure(notify_approvers_by_email=False, notify_emails="", slack_webhook_url="")
    with django_capture_on_commit_callbacks() as quiet:
        suspended()
    configure(notify_emails="ops@example.com")
    with django_capture_on_commit_callbacks() as configured:
        suspended()

    def ours(callbacks: list[Any]) -> list[Any]:
        return [cb for cb in callbacks if cb.__module__ == "approvals.notifications"]

    assert ours(quiet) == []
    assert len(ours(configured)) == 1
    assert len(configured) == len(quiet) + 1


@pytest.mark.django_db
def test_the_check_on_the_suspend_path_is_one_query():
    configure(notify_approvers_by_email=False, notify_emails="", slack_webhook_url="")

    with CaptureQueriesContext(connection) as captured:
        scheduled = notifications.notifications_schedule(
            suspension_id=1, workflow_id="test-approval"
        )

    assert scheduled is False
    assert len(captured.captured_queries) == 1


@pytest.mark.django_db
def test_approvers_and_listed_addresses_get_an_email_with_the_approval_link(smtp):
    finance = Group.objects.create(name="finance")
    alice = User.objects.create_user("alice", "alice@example.com")
    bob = User.objects.create_user("bob", "bob@example.com")
    bob.groups.add(finance)
    starter = User.objects.create_user("sam", "sam@example.com")
    User.objects.create_user("carol", "carol@example.com", is_staff=True)  # not an approver
    User.objects.create_user("gone", "gone@example.com", is_active=False).groups.add(finance)
    definition = configure(
        notify_approvers_by_email=True,
        notify_emails="ops@example.com\nOPS@example.com, audit@example.com\n",
        forbid_self_approval=True,
    )
    rule = ApproverRule.objects.create(workflow=definition)
    rule.users.set([alice, starter])
    rule.groups.set([finance])
    ApproverRule.objects.create(workflow=definition, step_key="another-step").users.add(
        User.objects.create_user("other", "other@example.com")
    )
    suspension = suspended(user=starter)

    deliver(suspension)

    assert smtp.recipients() == [
        "alice@example.com",
        "audit@example.com",
        "bob@example.com",
        "ops@example.com",
    ]
    _, message = smtp.messages[0]
    assert message["Subject"] == "Approval needed: test-approval / approval"
    text = body(message)
    assert f"/approve/{suspension.execution_id}/" in text
    assert "Started by:  sam" in text
    assert set(logs(suspension).values()) == {("sent", 1)}
    assert len(logs(suspension)) == 4


@pytest.mark.django_db
def test_without_rules_the_staff_who_may_decide_are_emailed(smtp):
    User.objects.create_user("carol", "carol@example.com", is_staff=True)
    User.objects.create_user("dave", "dave@example.com")
    definition = configure(notify_approvers_by_email=True)
    ApproverRule.objects.filter(workflow=definition).delete()
    suspension = suspended()

    deliver(suspension)

    assert smtp.recipients() == ["carol@example.com"]


@pytest.mark.django_db
def test_a_webhook_answering_500_then_200_is_retried_and_sent(webhook):
    hook = webhook(500)
    configure(slack_webhook_url=hook.url)
    suspension = suspended()

    deliver(suspension)

    assert len(hook.posts) == 2
    post = hook.posts[-1]
    link = f"/approve/{suspension.execution_id}/"
    assert link in post["text"] and post["approval_url"].endswith(link)
    assert post["workflow_id"] == "test-approval" and post["step_key"] == "approval"
    log = NotificationLog.objects.get(suspension=suspension)
    assert (log.channel, log.status, log.attempts) == ("slack", "sent", 2)
    assert log.last_error.startswith("WebhookError: HTTP 500")
    assert "secret-token" not in log.target
    assert log.target == f"http://127.0.0.1:{hook.server.server_port}/…"


@pytest.mark.django_db
def test_a_dead_webhook_ends_failed_and_the_workflow_carries_on(smtp, caplog):
    port = free_port()
    dead = f"http://127.0.0.1:{port}/hook"
    configure(slack_webhook_url=dead, notify_emails="ops@example.com")
    suspension = suspended()

    deliver(suspension)

    assert logs(suspension) == {
        ("slack", f"http://127.0.0.1:{port}/…"): ("failed", notifications.MAX_ATTEMPTS),
        ("email", "ops@example.com"): ("sent", 1),  # sent once, not again on the retries
    }
    assert smtp.recipients() == ["ops@example.com"]
    log = NotificationLog.objects.get(suspension=suspension, channel="slack")
    assert "ConnectError" in log.last_error and "/hook" not in log.last_error
    assert "giving up" in caplog.text
    execution = Execution.objects.get(pk=suspension.execution_id)
    assert execution.status == Execution.Status.WAITING
    services.suspension_resolve(
        execution_id=execution.pk, step_key="approval", data={"approved": True}
    )
    services.execution_advance(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.COMPLETED


@pytest.mark.django_db
def test_an_unreachable_smtp_server_fails_the_email_only(settings, webhook):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    hook = webhook()
    configure(slack_webhook_url=hook.url, notify_emails="ops@example.com")
    suspension = suspended()

    deliver(suspension)

    assert logs(suspension)[("email", "ops@example.com")] == ("failed", notifications.MAX_ATTEMPTS)
    assert len(hook.posts) == 1


@pytest.mark.django_db
def test_a_redelivered_task_sends_nothing_twice(smtp, webhook):
    hook = webhook()
    configure(slack_webhook_url=hook.url, notify_emails="ops@example.com")
    suspension = suspended()

    deliver(suspension)
    deliver(suspension)

    assert smtp.recipients() == ["ops@example.com"] and len(hook.posts) == 1
    assert set(logs(suspension).values()) == {("sent", 1)}


@pytest.mark.django_db
def test_an_approval_decided_before_delivery_is_not_announced(smtp, webhook):
    hook = webhook()
    configure(slack_webhook_url=hook.url, notify_emails="ops@example.com")
    suspension = suspended()
    services.suspension_resolve(
        execution_id=suspension.execution_id, step_key="approval", data={"approved": True}
    )

    deliver(suspension)

    assert smtp.messages == [] and hook.posts == []
    assert logs(suspension) == {}


def test_the_backoff_doubles_up_to_a_ceiling():
    delays = [notifications.retry_delay(n) for n in range(4)]
    assert delays == [notifications.RETRY_BASE_DELAY * factor for factor in (1, 2, 4, 8)]
    assert notifications.retry_delay(30) == notifications.RETRY_MAX_DELAY


# -- a real worker: queued after commit, delivered ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_running_polos_notifies_by_email_and_webhook(smtp_server, webhook):
    sink, smtp_port = smtp_server
    hook = webhook()
    configure(notify_emails="ops@example.com", slack_webhook_url=hook.url)
    # Committed before the server starts: it picks the queued execution up (embedded mode
    # re-sends queued work at start-up; services mode finds the message on the broker).
    execution, _ = services.execution_start(workflow_id="test-approval", payload={"amount": 9})

    with polos_run(
        env={
            "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "DJANGO_EMAIL_HOST": "127.0.0.1",
            "DJANGO_EMAIL_PORT": str(smtp_port),
            "POLOS_WORKFLOW_MODULES": "tests.support.flows",
        }
    ) as server:
        wait_until(
            lambda: (
                NotificationLog.objects.filter(
                    suspension__execution=execution, status=NotificationLog.Status.SENT
                ).count()
                == 2
            ),
            timeout=60,
            what="both notifications to be sent",
        )

    assert sink.recipients() == ["ops@example.com"]
    approve_url = f"{server.base_url}/approve/{execution.pk}/"
    assert approve_url in body(sink.messages[0][1])
    assert len(hook.posts) == 1 and hook.posts[0]["approval_url"] == approve_url
    assert Execution.objects.get(pk=execution.pk).status == Execution.Status.WAITING
