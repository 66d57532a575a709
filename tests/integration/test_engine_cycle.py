"""The engine's services on the real database, driven in-process (no broker)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tests.support.flows  # noqa: F401 - registers the test workflows
from workflows import services
from workflows.errors import (
    DecisionForbidden,
    ExecutionFinished,
    ExecutionNotFound,
    IdempotencyConflict,
    PayloadInvalid,
    SuspensionNotFound,
    SuspensionNotPending,
    WorkflowDisabled,
    WorkflowNotFound,
)
from workflows.models import Event, Execution, StepOutput, Suspension, WorkflowDefinition

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def side_effects(execution: Execution) -> list[str]:
    return [
        event.data["step"]
        for event in Event.objects.filter(topic=f"side-effects/{execution.pk}").order_by(
            "sequence_id"
        )
    ]


def advance(execution: Execution) -> Execution:
    assert services.execution_advance(execution_id=execution.pk) == services.ADVANCE_DONE
    execution.refresh_from_db()
    return execution


@pytest.fixture
def approver():
    return get_user_model().objects.create_user("ann", password="pw", is_staff=True)


def test_full_cycle_suspends_resumes_and_completes_with_the_decision(approver):
    execution, created = services.execution_start(
        workflow_id="test-approval", payload={"amount": 5}
    )
    assert created and execution.status == Execution.Status.QUEUED

    execution = advance(execution)

    assert execution.status == Execution.Status.WAITING
    suspension = Suspension.objects.get(execution=execution, step_key="approval")
    assert suspension.status == Suspension.Status.PENDING
    assert suspension.data == {"amount": 5}
    suspend_event = Event.objects.get(topic=f"approval/{execution.pk}", event_type="suspend")
    assert suspend_event.data["approval_url"].endswith(f"/approve/{execution.pk}/")
    assert suspend_event.data["workflow_id"] == "test-approval"
    assert suspend_event.data["data"] == {"amount": 5}

    services.suspension_resolve(
        execution_id=execution.pk, step_key="approval", data={"approved": True}, user=approver
    )
    execution.refresh_from_db()
    assert execution.status == Execution.Status.QUEUED
    execution = advance(execution)

    assert execution.status == Execution.Status.COMPLETED
    assert execution.result == {"approved": True, "decided_by": "ann"}
    assert side_effects(execution) == ["step_a", "step_b"]  # step A was replayed, not re-run
    suspension.refresh_from_db()
    assert suspension.status == Suspension.Status.RESUMED
    assert suspension.decided_by == approver and suspension.decided_at is not None
    types = list(
        Event.objects.filter(execution=execution)
        .exclude(topic__startswith="side-effects/")
        .values_list("event_type", flat=True)
    )
    assert types == [
        "execution_start",
        "step_finish",
        "suspend",
        "resume",
        "step_finish",
        "execution_finish",
    ]


def test_multi_stage_keeps_every_decision_with_who_and_when(approver):
    execution, _ = services.execution_start(workflow_id="test-two-stage", payload={})
    advance(execution)
    services.suspension_resolve(
        execution_id=execution.pk,
        step_key="manager_approval",
        data={"approved": True, "comment": "fine"},
        user=approver,
    )
    assert advance(execution).status == Execution.Status.WAITING
    services.suspension_resolve(
        execution_id=execution.pk,
        step_key="finance_approval",
        data={"approved": False, "comment": "no budget"},
    )
    execution = advance(execution)

    assert execution.status == Execution.Status.COMPLETED
    assert execution.result == {
        "manager": {"approved": True, "comment": "fine"},
        "finance": {"approved": False, "comment": "no budget"},
    }
    stages = list(
        Suspension.objects.filter(execution=execution)
        .order_by("created_at")
        .values_list("step_key", "status", "decided_by__username", "decision")
    )
    assert stages == [
        ("manager_approval", "resumed", "ann", {"approved": True, "comment": "fine"}),
        ("finance_approval", "resumed", None, {"approved": False, "comment": "no budget"}),
    ]


def test_second_decision_is_refused_naming_who_decided_and_when(approver):
    execution, _ = services.execution_start(workflow_id="test-approval", payload={})
    advance(execution)
    services.suspension_resolve(
        execution_id=execution.pk, step_key="approval", data={"approved": True}, user=approver
    )

    with pytest.raises(SuspensionNotPending) as refused:
        services.suspension_resolve(
            execution_id=execution.pk, step_key="approval", data={"approved": False}
        )

    assert refused.value.status == "resumed"
    assert refused.value.decided_by == "ann"
    assert refused.value.decided_at is not None
    assert Event.objects.filter(execution=execution, event_type="resume").count() == 1


def test_decisions_for_unknown_targets_are_refused():
    execution, _ = services.execution_start(workflow_id="test-approval", payload={})

    with pytest.raises(SuspensionNotFound):  # not suspended yet
        services.suspension_resolve(execution_id=execution.pk, step_key="approval", data={})
    advance(execution)
    with pytest.raises(SuspensionNotFound):
        services.suspension_resolve(execution_id=execution.pk, step_key="nope", data={})
    with pytest.raises(ExecutionNotFound):
        services.suspension_resolve(execution_id=uuid.uuid4(), step_key="approval", data={})
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.PENDING


def test_a_user_without_permission_cannot_decide():
    outsider = get_user_model().objects.create_user("bob", password="pw")
    execution, _ = services.execution_start(workflow_id="test-approval", payload={})
    advance(execution)

    with pytest.raises(DecisionForbidden):
        services.suspension_resolve(
            execution_id=execution.pk, step_key="approval", data={"approved": True}, user=outsider
        )
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.PENDING


def test_cancel_of_a_waiting_execution_cancels_its_suspension():
    execution, _ = services.execution_start(workflow_id="test-approval", payload={})
    advance(execution)

    services.execution_cancel(execution_id=execution.pk)

    execution.refresh_from_db()
    assert execution.status == Execution.Status.CANCELLED
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.CANCELLED
    with pytest.raises(SuspensionNotPending):
        services.suspension_resolve(execution_id=execution.pk, step_key="approval", data={})
    with pytest.raises(ExecutionFinished):
        services.execution_cancel(execution_id=execution.pk)
    # A late task for the cancelled execution does nothing.
    assert services.execution_advance(execution_id=execution.pk) == services.ADVANCE_SKIPPED
    assert side_effects(execution) == ["step_a"]


def test_start_refuses_unknown_disabled_and_invalid():
    with pytest.raises(WorkflowNotFound):
        services.execution_start(workflow_id="no-such-workflow", payload={})
    with pytest.raises(PayloadInvalid) as invalid:
        services.execution_start(workflow_id="test-typed", payload={"item": "x", "amount": "lots"})
    assert invalid.value.errors[0]["field"] == "amount"
    # Definitions are synced on migrate: the row may exist already.
    WorkflowDefinition.objects.update_or_create(
        workflow_id="test-typed", defaults={"enabled": False}
    )
    with pytest.raises(WorkflowDisabled):
        services.execution_start(workflow_id="test-typed", payload={"item": "x", "amount": 1})
    assert not Execution.objects.exists()


def test_idempotency_key_returns_the_same_execution_and_refuses_another_payload():
    first, created = services.execution_start(
        workflow_id="test-approval", payload={"amount": 1}, idempotency_key="k-1"
    )
    again, created_again = services.execution_start(
        workflow_id="test-approval", payload={"amount": 1}, idempotency_key="k-1"
    )
    assert created and not created_again and again.pk == first.pk
    with pytest.raises(IdempotencyConflict):
        services.execution_start(
            workflow_id="test-approval", payload={"amount": 2}, idempotency_key="k-1"
        )


def test_a_failing_step_fails_the_execution_with_its_error():
    execution, _ = services.execution_start(workflow_id="test-fails", payload={})
    execution = advance(execution)

    assert execution.status == Execution.Status.FAILED
    assert execution.error["type"] == "StepExecutionError"
    assert "the card was declined" in execution.error["message"]
    assert "Traceback" in execution.error["traceback"]
    step = StepOutput.objects.get(execution=execution, step_key="charge")
    assert step.status == "failed" and step.error["type"] == "RuntimeError"


def test_replay_loads_100_finished_steps_in_one_query():
    execution, _ = services.execution_start(workflow_id="test-many-steps", payload={"steps": 100})
    advance(execution)
    assert StepOutput.objects.filter(execution=execution).count() == 100
    services.suspension_resolve(execution_id=execution.pk, step_key="approval", data={"ok": 1})

    with CaptureQueriesContext(connection) as captured:
        execution = advance(execution)

    assert execution.status == Execution.Status.COMPLETED
    assert execution.result == {"total": sum(range(100)), "decision": {"ok": 1}}
    step_selects = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith("SELECT") and "workflows_stepoutput" in q["sql"]
    ]
    assert len(step_selects) == 1
    # Constant, whatever the number of steps: lease, claim, load, finish.
    assert len(captured.captured_queries) <= 12


def test_replay_query_count_does_not_grow_with_steps():
    counts = []
    for steps in (5, 60):
        execution, _ = services.execution_start(
            workflow_id="test-many-steps", payload={"steps": steps}
        )
        advance(execution)
        services.suspension_resolve(execution_id=execution.pk, step_key="approval", data={})
        with CaptureQueriesContext(connection) as captured:
            advance(execution)
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]


def test_payload_model_is_validated_and_stored_normalised():
    execution, _ = services.execution_start(
        workflow_id="test-typed", payload={"item": "pen", "amount": "2.5"}
    )
    assert execution.payload == {"item": "pen", "amount": 2.5}
    assert advance(execution).result == {"item": "pen", "double": 5.0}
