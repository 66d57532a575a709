"""Django admin: pages load for a superuser, the engine's records are read-only, cancel and
retry go through the services, and definitions are synced on migrate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.sql import emit_post_migrate_signal
from django.urls import reverse
from django.utils import timezone

import tests.support.flows
import tests.support.flows_admin  # noqa: F401 - registers the test workflows
from approvals.models import ApproverRule, NotificationLog
from workflows import services
from workflows.engine.registry import registry
from workflows.errors import ExecutionNotRetryable
from workflows.models import Event, Execution, StepOutput, Suspension, WorkflowDefinition

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def advance(execution: Execution) -> Execution:
    services.execution_advance(execution_id=execution.pk)
    execution.refresh_from_db()
    return execution


def started(workflow_id: str, payload: dict | None = None) -> Execution:
    execution, _ = services.execution_start(workflow_id=workflow_id, payload=payload or {})
    return advance(execution)


def side_effects(execution: Execution) -> list[str]:
    return list(
        Event.objects.filter(topic=f"side-effects/{execution.pk}")
        .order_by("sequence_id")
        .values_list("data__step", flat=True)
    )


@pytest.fixture
def records():
    """A waiting approval, a failed execution, a decided approval and an overdue one."""
    waiting = started("test-approval", {"amount": 7})
    failed = started("test-fails")
    decided = started("test-approval")
    services.suspension_resolve(
        execution_id=decided.pk, step_key="approval", data={"approved": False}
    )
    overdue = started("test-approval")
    Suspension.objects.filter(execution=overdue).update(
        expires_at=timezone.now() - timedelta(minutes=5)
    )
    NotificationLog.objects.create(
        suspension=Suspension.objects.get(execution=waiting),
        channel=NotificationLog.Channel.EMAIL,
        target="ann@example.com",
        status=NotificationLog.Status.FAILED,
        attempts=5,
        last_error="SMTPRecipientsRefused",
    )
    return {"waiting": waiting, "failed": failed, "decided": decided, "overdue": overdue}


def changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def change(model: str, pk) -> str:
    return reverse(f"admin:{model}_change", args=[pk])


def listed(response) -> set[str]:
    return {str(pk) for pk in response.context["cl"].result_list.values_list("pk", flat=True)}


def test_every_changelist_and_change_page_loads(admin_client, records):
    suspension = Suspension.objects.get(execution=records["waiting"])
    pages = [
        changelist("workflows_workflowdefinition"),
        change(
            "workflows_workflowdefinition",
            WorkflowDefinition.objects.get(workflow_id="test-approval").pk,
        ),
        changelist("workflows_execution"),
        change("workflows_execution", records["waiting"].pk),
        change("workflows_execution", records["failed"].pk),
        changelist("workflows_suspension"),
        change("workflows_suspension", suspension.pk),
        changelist("approvals_notificationlog"),
        change("approvals_notificationlog", NotificationLog.objects.get().pk),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url

    execution_page = admin_client.get(change("workflows_execution", records["waiting"].pk))
    content = execution_page.content.decode()
    assert "step_a" in content and "approval" in content and "execution_start" in content
    assert f"/executions/{records['waiting'].pk}/" in content
    suspension_page = admin_client.get(change("workflows_suspension", suspension.pk)).content
    assert f"/approve/{records['waiting'].pk}/approval/".encode() in suspension_page
    assert b"SMTPRecipientsRefused" in suspension_page  # its notifications, inline


def test_execution_filters_and_search(admin_client, records):
    url = changelist("workflows_execution")

    failed = admin_client.get(url, {"status": "failed"})
    by_workflow = admin_client.get(url, {"workflow": "test-fails"})
    # The date filter's "Today" link.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    since_today = admin_client.get(
        url, {"created_at__gte": str(today), "created_at__lt": str(today + timedelta(days=1))}
    )
    by_id = admin_client.get(url, {"q": str(records["waiting"].pk)})
    garbage = admin_client.get(url, {"q": "not an id"})

    assert listed(failed) == {str(records["failed"].pk)}
    assert listed(by_workflow) == {str(records["failed"].pk)}
    assert len(listed(since_today)) == 4
    assert listed(by_id) == {str(records["waiting"].pk)}
    assert garbage.status_code == 200 and listed(garbage) == set()


def test_suspension_filters_pending_overdue_decided(admin_client, records):
    url = changelist("workflows_suspension")

    def executions(state: str) -> set[str]:
        response = admin_client.get(url, {"state": state})
        assert response.status_code == 200
        return {
            str(s.execution_id)
            for s in Suspension.objects.filter(pk__in=response.context["cl"].result_list)
        }

    assert executions("pending") == {str(records["waiting"].pk), str(records["overdue"].pk)}
    assert executions("overdue") == {str(records["overdue"].pk)}
    assert executions("decided") == {str(records["decided"].pk)}
    by_execution = admin_client.get(url, {"q": str(records["decided"].pk)})
    assert len(by_execution.context["cl"].result_list) == 1


def test_the_suspension_admin_cannot_decide_or_change_anything(admin_client, records):
    suspension = Suspension.objects.get(execution=records["waiting"])
    url = change("workflows_suspension", suspension.pk)

    page = admin_client.get(url)
    forged = admin_client.post(
        url,
        {
            "status": "resumed",
            "decision": '{"approved": true}',
            "decided_ip": "6.6.6.6",
            "decided_user_agent": "forged",
        },
    )
    add = admin_client.get(reverse("admin:workflows_suspension_add"))
    delete = admin_client.post(
        reverse("admin:workflows_suspension_delete", args=[suspension.pk]), {"post": "yes"}
    )

    assert b'name="_save"' not in page.content
    assert forged.status_code == 403
    assert add.status_code == 403 and delete.status_code == 403
    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.PENDING
    assert suspension.decision is None and suspension.decided_ip is None


def test_executions_are_read_only(admin_client, records):
    execution = records["waiting"]

    add = admin_client.get(reverse("admin:workflows_execution_add"))
    edit = admin_client.post(change("workflows_execution", execution.pk), {"status": "completed"})
    delete = admin_client.post(
        reverse("admin:workflows_execution_delete", args=[execution.pk]), {"post": "yes"}
    )

    assert (add.status_code, edit.status_code, delete.status_code) == (403, 403, 403)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.WAITING


def test_the_cancel_action_cancels_through_the_service(admin_client, admin_user, records):
    response = admin_client.post(
        changelist("workflows_execution"),
        {
            "action": "cancel_executions",
            "_selected_action": [str(records["waiting"].pk), str(records["failed"].pk)],
        },
        follow=True,
    )

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert "1 execution(s) cancelled." in messages
    assert any("1 finished execution(s) left as they are" in m for m in messages)
    waiting = Execution.objects.get(pk=records["waiting"].pk)
    assert waiting.status == Execution.Status.CANCELLED
    suspension = Suspension.objects.get(execution=waiting)
    assert suspension.status == Suspension.Status.CANCELLED
    assert suspension.decided_by == admin_user
    finish = Event.objects.get(execution=waiting, event_type="execution_finish")
    assert finish.data == {"status": "cancelled", "cancelled_by": admin_user.username}
    assert Execution.objects.get(pk=records["failed"].pk).status == Execution.Status.FAILED


def test_the_retry_action_requeues_a_failed_execution_keeping_its_finished_steps(
    admin_client, admin_user
):
    execution = started("admin-flaky")
    assert execution.status == Execution.Status.FAILED
    Event.objects.create(topic=f"flaky-fixed/{execution.pk}", event_type="fixed")

    response = admin_client.post(
        changelist("workflows_execution"),
        {"action": "retry_executions", "_selected_action": [str(execution.pk)]},
        follow=True,
    )

    assert "1 execution(s) queued again." in [str(m) for m in response.context["messages"]]
    execution.refresh_from_db()
    assert execution.status == Execution.Status.QUEUED
    assert execution.error is None and execution.finished_at is None
    assert list(
        StepOutput.objects.filter(execution=execution).values_list("step_key", "status")
    ) == [("prepare", "completed")]
    retry = Event.objects.get(execution=execution, event_type="execution_retry")
    assert retry.data["retried_by"] == admin_user.username
    assert retry.data["failed_steps"] == ["charge"]
    assert retry.data["previous_error"]["type"] == "StepExecutionError"

    execution = advance(execution)

    assert execution.status == Execution.Status.COMPLETED
    assert execution.result == {"charged": True}
    assert side_effects(execution) == ["prepare", "charge"]  # prepare was replayed, not re-run


def test_retry_refuses_what_has_not_failed(records):
    with pytest.raises(ExecutionNotRetryable):
        services.execution_retry(execution_id=records["waiting"].pk)
    assert Execution.objects.get(pk=records["waiting"].pk).status == Execution.Status.WAITING


def test_retry_after_an_approval_timed_out_asks_again():
    execution = started("admin-deadline", {"amount": 3})
    suspension = Suspension.objects.get(execution=execution)
    Suspension.objects.filter(pk=suspension.pk).update(expires_at=timezone.now())
    assert services.suspension_expire(suspension_id=suspension.pk)
    assert advance(execution).status == Execution.Status.FAILED

    services.execution_retry(execution_id=execution.pk)
    execution = advance(execution)

    assert execution.status == Execution.Status.WAITING
    again = Suspension.objects.get(execution=execution)
    assert again.status == Suspension.Status.PENDING and again.pk != suspension.pk
    assert side_effects(execution) == ["prepare"]
    services.suspension_resolve(execution_id=execution.pk, step_key="approval", data={"ok": 1})
    assert advance(execution).result == {"decision": {"ok": 1}}


def test_a_definition_is_configured_in_admin_with_approvers(admin_client):
    definition = WorkflowDefinition.objects.get_or_create(workflow_id="test-two-stage")[0]
    finance = Group.objects.create(name="finance")
    ann = get_user_model().objects.create_user("ann")

    response = admin_client.post(
        change("workflows_workflowdefinition", definition.pk),
        {
            "enabled": "",
            "default_timeout": "3600",
            "forbid_self_approval": "on",
            "notify_approvers_by_email": "on",
            "notify_emails": "ops@example.com",
            "slack_webhook_url": "https://hooks.example.com/services/T0/B0/x",
            # An attempt to rename it: read-only, ignored.
            "workflow_id": "renamed",
            "approver_rules-TOTAL_FORMS": "2",
            "approver_rules-INITIAL_FORMS": "0",
            "approver_rules-MIN_NUM_FORMS": "0",
            "approver_rules-MAX_NUM_FORMS": "1000",
            "approver_rules-0-step_key": "manager_approval",
            "approver_rules-0-users": [str(ann.pk)],
            "approver_rules-1-step_key": "",
            "approver_rules-1-groups": [str(finance.pk)],
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    definition.refresh_from_db()
    assert definition.workflow_id == "test-two-stage"
    assert not definition.enabled and definition.default_timeout == 3600
    assert definition.forbid_self_approval and definition.notify_approvers_by_email
    rules = {
        (r.step_key, tuple(r.users.values_list("username", flat=True)), tuple(r.groups.all()))
        for r in ApproverRule.objects.filter(workflow=definition)
    }
    assert rules == {("manager_approval", ("ann",), ()), ("", (), (finance,))}
    assert admin_client.get(reverse("admin:workflows_workflowdefinition_add")).status_code == 403


def test_definitions_are_synced_from_the_registry_on_migrate():
    WorkflowDefinition.objects.all().delete()
    WorkflowDefinition.objects.create(workflow_id="gone-from-the-code")

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    synced = set(
        WorkflowDefinition.objects.filter(registered=True).values_list("workflow_id", flat=True)
    )
    assert synced == {spec.id for spec in registry.all()}
    assert not WorkflowDefinition.objects.get(workflow_id="gone-from-the-code").registered
