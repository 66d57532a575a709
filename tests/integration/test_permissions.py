"""Who may decide: approver rules per workflow and step, the staff fallback, four eyes,
superusers; checked through the one decision service and the inbox's list filter."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tests.support.flows  # noqa: F401 - registers the test workflows
from approvals.models import ApproverRule
from approvals.permissions import decidable_by, may_watch_execution, user_may_decide
from workflows import selectors, services
from workflows.errors import DecisionForbidden
from workflows.models import Execution, Suspension, WorkflowDefinition

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

User = get_user_model()


@pytest.fixture
def finance():
    return Group.objects.create(name="finance")


@pytest.fixture
def people(finance):
    """alice: named in rules; bob: in the finance group; carol: staff, named nowhere;
    dave: a plain user; root: a superuser."""
    alice = User.objects.create_user("alice", "alice@example.com")
    bob = User.objects.create_user("bob", "bob@example.com")
    bob.groups.add(finance)
    carol = User.objects.create_user("carol", "carol@example.com", is_staff=True)
    dave = User.objects.create_user("dave", "dave@example.com")
    root = User.objects.create_superuser("root", "root@example.com")
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "root": root}


def definition(workflow_id: str, **changes) -> WorkflowDefinition:
    # Synced on migrate already; get_or_create keeps the test independent of that.
    row, _ = WorkflowDefinition.objects.get_or_create(workflow_id=workflow_id)
    if changes:
        WorkflowDefinition.objects.filter(pk=row.pk).update(**changes)
        row.refresh_from_db()
    return row


def rule(workflow_id: str, step_key: str = "", users=(), groups=()) -> ApproverRule:
    created = ApproverRule.objects.create(workflow=definition(workflow_id), step_key=step_key)
    created.users.set(users)
    created.groups.set(groups)
    return created


def suspended(workflow_id: str, user=None) -> Execution:
    execution, _ = services.execution_start(workflow_id=workflow_id, payload={}, user=user)
    services.execution_advance(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.WAITING
    return execution


def pending(execution: Execution) -> Suspension:
    return Suspension.objects.get(execution=execution, status=Suspension.Status.PENDING)


def decide(user, execution: Execution) -> None:
    suspension = pending(execution)
    services.suspension_resolve(
        execution_id=execution.pk,
        step_key=suspension.step_key,
        data={"approved": True},
        user=user,
        ip_address="10.1.2.3",
        user_agent="pytest",
    )


def inbox(user) -> set[int]:
    return set(decidable_by(user, selectors.suspension_list_pending()).values_list("pk", flat=True))


def test_a_user_named_in_a_rule_decides_and_nobody_else_but_superusers(people):
    rule("test-approval", users=[people["alice"]])
    execution = suspended("test-approval")
    suspension = pending(execution)

    for name in ("bob", "carol", "dave"):
        with pytest.raises(DecisionForbidden):
            decide(people[name], execution)
        assert not user_may_decide(people[name], suspension)
        assert suspension.pk not in inbox(people[name])
    assert user_may_decide(people["root"], suspension)
    assert suspension.pk in inbox(people["alice"]) and suspension.pk in inbox(people["root"])

    decide(people["alice"], execution)

    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.RESUMED
    assert suspension.decided_by == people["alice"]
    assert suspension.decided_ip == "10.1.2.3" and suspension.decided_user_agent == "pytest"


def test_a_group_in_a_rule_lets_its_members_decide(people, finance):
    rule("test-approval", groups=[finance])
    execution = suspended("test-approval")

    assert pending(execution).pk in inbox(people["bob"])
    assert not inbox(people["alice"])
    with pytest.raises(DecisionForbidden):
        decide(people["alice"], execution)
    decide(people["bob"], execution)

    assert Suspension.objects.get(execution=execution).decided_by == people["bob"]


def test_step_rules_apply_to_their_step_only(people, finance):
    rule("test-two-stage", "manager_approval", users=[people["alice"]])
    rule("test-two-stage", "finance_approval", groups=[finance])
    execution = suspended("test-two-stage")
    manager = pending(execution)

    assert user_may_decide(people["alice"], manager)
    assert not user_may_decide(people["bob"], manager)
    assert inbox(people["alice"]) == {manager.pk} and not inbox(people["bob"])
    with pytest.raises(DecisionForbidden):
        decide(people["bob"], execution)
    decide(people["alice"], execution)
    services.execution_advance(execution_id=execution.pk)
    finance_stage = pending(execution)

    assert finance_stage.step_key == "finance_approval"
    assert inbox(people["bob"]) == {finance_stage.pk} and not inbox(people["alice"])
    with pytest.raises(DecisionForbidden):
        decide(people["alice"], execution)
    decide(people["bob"], execution)


def test_a_rule_without_step_key_covers_every_step(people):
    rule("test-two-stage", users=[people["dave"]])
    execution = suspended("test-two-stage")

    decide(people["dave"], execution)
    services.execution_advance(execution_id=execution.pk)
    decide(people["dave"], execution)

    services.execution_advance(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.COMPLETED


def test_without_rules_active_staff_decide(people):
    definition("test-approval")
    ApproverRule.objects.filter(workflow__workflow_id="test-approval").delete()
    execution = suspended("test-approval")
    suspension = pending(execution)
    inactive = User.objects.create_user("ivy", is_staff=True, is_active=False)

    assert suspension.pk in inbox(people["carol"])
    for user in (people["alice"], people["dave"], inactive, AnonymousUser(), None):
        assert not user_may_decide(user, suspension)
        assert suspension.pk not in inbox(user)
    with pytest.raises(DecisionForbidden):
        decide(people["dave"], execution)
    decide(people["carol"], execution)


def test_rules_on_another_workflow_do_not_end_this_ones_fallback(people):
    rule("test-two-stage", users=[people["alice"]])
    execution = suspended("test-approval")

    assert pending(execution).pk in inbox(people["carol"])
    assert pending(execution).pk not in inbox(people["alice"])
    decide(people["carol"], execution)


def test_forbid_self_approval_refuses_the_starter_even_a_superuser(people):
    definition("test-approval", forbid_self_approval=True)
    rule("test-approval", users=[people["alice"], people["bob"]])
    by_alice = suspended("test-approval", user=people["alice"])
    by_root = suspended("test-approval", user=people["root"])
    by_nobody = suspended("test-approval")

    with pytest.raises(DecisionForbidden):
        decide(people["alice"], by_alice)
    with pytest.raises(DecisionForbidden):
        decide(people["root"], by_root)
    assert inbox(people["alice"]) == {pending(by_root).pk, pending(by_nobody).pk}
    assert inbox(people["root"]) == {pending(by_alice).pk, pending(by_nobody).pk}
    decide(people["bob"], by_alice)
    decide(people["alice"], by_root)
    decide(people["root"], by_nobody)


def test_self_approval_is_allowed_unless_forbidden(people):
    definition("test-approval", forbid_self_approval=False)
    rule("test-approval", users=[people["alice"]])
    execution = suspended("test-approval", user=people["alice"])

    decide(people["alice"], execution)


def test_superusers_decide_everything(people):
    rule("test-approval", "approval", users=[people["alice"]])
    rule("test-two-stage", "manager_approval", users=[people["alice"]])
    one, two = suspended("test-approval"), suspended("test-two-stage")

    assert inbox(people["root"]) == {pending(one).pk, pending(two).pk}
    decide(people["root"], one)
    decide(people["root"], two)


def test_the_list_filter_agrees_with_the_decision_check_for_everyone(people, finance):
    definition("test-approval", forbid_self_approval=True)
    rule("test-approval", "approval", users=[people["alice"]])
    rule("test-two-stage", "finance_approval", groups=[finance])
    rule("test-two-stage", "manager_approval", users=[people["dave"]])
    executions = [
        suspended("test-approval", user=people["alice"]),
        suspended("test-approval", user=people["root"]),
        suspended("test-approval"),
        suspended("test-two-stage", user=people["bob"]),
        suspended("test-many-steps"),  # no rules: the staff fallback
    ]
    decide(people["dave"], executions[3])
    services.execution_advance(execution_id=executions[3].pk)
    suspensions = list(selectors.suspension_list_pending())
    assert len(suspensions) == 5

    for user in people.values():
        expected = {s.pk for s in suspensions if user_may_decide(user, s)}
        assert inbox(user) == expected, user.username


def test_the_list_filter_is_resolved_before_the_suspension_query(people, finance):
    rule("test-approval", "approval", users=[people["alice"]])
    rule("test-two-stage", groups=[finance])
    definition("test-many-steps", forbid_self_approval=True)
    queryset = selectors.suspension_list_pending()

    with CaptureQueriesContext(connection) as captured:
        filtered = decidable_by(people["alice"], queryset)
        list(filtered[:50])

    # The rules (one query), the flags (one query), then the list itself.
    assert len(captured.captured_queries) == 3
    sql = captured.captured_queries[-1]["sql"]
    assert "approvals_approverrule" not in sql
    assert "auth_user_groups" not in sql


def test_superusers_get_the_list_unchanged_without_four_eyes_workflows(people):
    WorkflowDefinition.objects.update(forbid_self_approval=False)
    queryset = selectors.suspension_list_pending()

    assert str(decidable_by(people["root"], queryset).query) == str(queryset.query)


def test_who_may_watch_an_execution(people, finance):
    rule("test-two-stage", "finance_approval", groups=[finance])
    execution = suspended("test-two-stage", user=people["dave"])
    other = suspended("test-approval")
    outsider = User.objects.create_user("eve")

    assert may_watch_execution(people["root"], execution)
    assert may_watch_execution(people["carol"], execution)  # staff
    assert may_watch_execution(people["dave"], execution)  # the starter
    assert may_watch_execution(people["bob"], execution)  # an approver of its workflow
    assert may_watch_execution(people["bob"], str(execution.pk))
    assert not may_watch_execution(people["bob"], other)
    assert not may_watch_execution(outsider, execution)
    assert not may_watch_execution(AnonymousUser(), execution)
    assert not may_watch_execution(people["bob"], uuid.uuid4())
    assert not may_watch_execution(people["bob"], "not-a-uuid")
