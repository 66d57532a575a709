"""Decisions over HTTP: both resume endpoints, a ``resume`` event, and the approvals list.
All of them go through the one decision service, so they answer alike."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

import tests.support.flows  # noqa: F401 - registers the test workflows
from approvals.models import ApproverRule
from tests.support.api import Api, advance, key_for, make_user
from workflows.models import Event, Execution, StepOutput, Suspension, WorkflowDefinition

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Api:
    return Api.create()


def waiting(api: Api, workflow_id: str = "test-approval", payload: dict | None = None) -> str:
    """An execution suspended on its approval."""
    response = api.post(f"/workflows/{workflow_id}/run", {"payload": payload or {"amount": 7}})
    execution_id = response.json()["execution_id"]
    assert advance(execution_id).status == Execution.Status.WAITING
    return execution_id


def charge(api: Api) -> str:
    """The seed's flow, suspended on its high-value approval (which has a ``_form``)."""
    return waiting(api, "charge-customer", {"customer_id": "c-1", "amount": 2500})


# Each way of deciding, as (path, body) for an execution, step key and decision.
def by_resume(execution_id: str, step_key: str, data: object) -> tuple[str, dict]:
    return f"/executions/{execution_id}/resume", {"step_key": step_key, "data": data}


def by_polos_route(execution_id: str, step_key: str, data: object) -> tuple[str, dict]:
    execution = Execution.objects.filter(pk=execution_id).first()
    workflow_id = execution.workflow_id if execution else "test-approval"
    return (
        f"/workflows/{workflow_id}/executions/{execution_id}/resume",
        {"step_key": step_key, "data": data},
    )


def by_event(execution_id: str, step_key: str, data: object) -> tuple[str, dict]:
    return "/events", {"topic": f"{step_key}/{execution_id}", "event_type": "resume", "data": data}


DECIDERS = pytest.mark.parametrize("decide", [by_resume, by_polos_route, by_event])
SUCCESS = {by_resume: 202, by_polos_route: 202, by_event: 201}


@DECIDERS
def test_a_decision_resumes_the_execution_as_the_keys_user(api, decide):
    execution_id = waiting(api)

    response = api.post(*decide(execution_id, "approval", {"approved": True}))

    assert response.status_code == SUCCESS[decide]
    suspension = Suspension.objects.get(execution_id=execution_id)
    assert suspension.status == Suspension.Status.RESUMED
    assert suspension.decided_by == api.approver
    assert suspension.decision == {"approved": True}
    assert suspension.decided_ip == "127.0.0.1"
    assert Execution.objects.get(pk=execution_id).status == Execution.Status.QUEUED
    assert advance(execution_id).result == {"approved": True, "decided_by": "ann"}


def test_resume_answers_what_it_decided(api):
    execution_id = waiting(api)

    response = api.post(*by_resume(execution_id, "approval", {"approved": False}))

    assert response.json() == {
        "execution_id": execution_id,
        "step_key": "approval",
        "status": "resumed",
    }


def test_a_resume_event_answers_the_sequence_id_of_the_logged_resume(api):
    execution_id = waiting(api)

    response = api.post(*by_event(execution_id, "approval", {"approved": True}))

    resume = Event.objects.get(topic=f"approval/{execution_id}", event_type="resume")
    assert response.json() == {"sequence_id": resume.sequence_id}
    assert Event.objects.filter(event_type="resume").count() == 1  # not stored twice


@DECIDERS
def test_a_decision_on_an_unknown_execution_is_404(api, decide):
    response = api.post(*decide(str(uuid.uuid4()), "approval", {"approved": True}))

    assert response.status_code == 404
    assert response.json()["code"] == "execution_not_found"


@DECIDERS
def test_a_decision_on_a_step_that_is_not_suspended_is_404(api, decide):
    execution_id = waiting(api)

    response = api.post(*decide(execution_id, "no_such_step", {"approved": True}))

    assert response.status_code == 404
    assert response.json()["code"] == "suspension_not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/executions/not-a-uuid/resume",
        "/workflows/test-approval/executions/not-a-uuid/resume",
    ],
)
def test_a_decision_on_a_malformed_execution_id_is_404(api, path):
    response = api.post(path, {"step_key": "approval", "data": {}})

    assert response.status_code == 404


def test_a_resume_event_on_a_malformed_topic_is_refused(api):
    no_uuid = api.post("/events", {"topic": "approval/not-a-uuid", "event_type": "resume"})
    no_step = api.post("/events", {"topic": "no-slash", "event_type": "resume"})

    assert no_uuid.status_code == 404
    assert no_step.status_code == 422
    assert no_step.json()["code"] == "event_invalid"


def test_the_polos_route_with_another_workflow_is_404(api):
    execution_id = waiting(api)

    response = api.post(
        f"/workflows/charge-customer/executions/{execution_id}/resume",
        {"step_key": "approval", "data": {"approved": True}},
    )

    assert response.status_code == 404
    assert Suspension.objects.get(execution_id=execution_id).status == Suspension.Status.PENDING


@DECIDERS
def test_a_second_decision_is_409_naming_the_first(api, decide):
    execution_id = waiting(api)
    api.post(*by_resume(execution_id, "approval", {"approved": True}))

    response = api.post(*decide(execution_id, "approval", {"approved": False}))

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "not_pending"
    assert body["status"] == "resumed"
    assert body["decided_by"] == "ann"
    assert body["decided_at"] is not None
    assert "no longer pending" in body["detail"]


def test_deciding_a_cancelled_approval_is_409(api):
    execution_id = waiting(api)
    api.post(f"/executions/{execution_id}/cancel")

    response = api.post(*by_resume(execution_id, "approval", {"approved": True}))

    assert response.status_code == 409
    assert response.json()["status"] == "cancelled"


@DECIDERS
def test_a_decision_that_fails_the_form_is_422_and_consumes_nothing(api, decide):
    execution_id = charge(api)

    response = api.post(*decide(execution_id, "high_value_approval", {"approved": "maybe"}))

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "decision_invalid"
    assert body["errors"] == [{"field": "approved", "message": "Choose yes or no."}]
    suspension = Suspension.objects.get(execution_id=execution_id)
    assert suspension.status == Suspension.Status.PENDING
    assert not Event.objects.filter(execution_id=execution_id, event_type="resume").exists()
    assert not StepOutput.objects.filter(step_key="high_value_approval").exists()


@DECIDERS
def test_a_decision_that_is_not_an_object_is_422(api, decide):
    execution_id = waiting(api)

    response = api.post(*decide(execution_id, "approval", ["yes"]))

    assert response.status_code == 422
    assert response.json()["code"] == "decision_invalid"


def test_the_seed_flow_is_charged_after_an_approval_through_the_api(api):
    execution_id = charge(api)

    api.post(*by_resume(execution_id, "high_value_approval", {"approved": "true", "comment": "ok"}))
    execution = advance(execution_id)

    assert execution.status == Execution.Status.COMPLETED
    assert execution.result["status"] == "charged"


@DECIDERS
def test_a_user_who_may_not_decide_gets_403_and_nothing_changes(api, decide):
    execution_id = waiting(api)

    response = api.post(*decide(execution_id, "approval", {"approved": True}), key=api.viewer_key)

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert Suspension.objects.get(execution_id=execution_id).status == Suspension.Status.PENDING


def test_per_workflow_approvers_apply_to_api_decisions(api):
    """The console's approver rules decide for keys too: a listed non-staff user may, a staff
    user not listed may not."""
    definition, _ = WorkflowDefinition.objects.get_or_create(workflow_id="test-approval")
    rule = ApproverRule.objects.create(workflow=definition)
    rule.users.add(api.viewer)
    first, second = waiting(api), waiting(api)

    by_staff = api.post(*by_resume(first, "approval", {"approved": True}))
    by_listed = api.post(*by_resume(second, "approval", {"approved": True}), key=api.viewer_key)

    assert by_staff.status_code == 403
    assert by_listed.status_code == 202


def test_forbidden_self_approval_applies_to_api_decisions(api):
    WorkflowDefinition.objects.update_or_create(
        workflow_id="test-approval", defaults={"forbid_self_approval": True}
    )
    execution_id = waiting(api)  # started by ann's key
    colleague = make_user("cat", staff=True)

    by_starter = api.post(*by_resume(execution_id, "approval", {"approved": True}))
    by_colleague = api.post(
        *by_resume(execution_id, "approval", {"approved": True}), key=key_for(colleague)
    )

    assert by_starter.status_code == 403
    assert by_colleague.status_code == 202


@pytest.mark.parametrize("body", [{"data": {}}, {"step_key": "", "data": {}}])
def test_a_resume_without_a_step_key_is_422(api, body):
    execution_id = waiting(api)

    response = api.post(f"/executions/{execution_id}/resume", body)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["field"] == "step_key"


# -- GET /approvals ---------------------------------------------------------------------------


def test_approvals_list_what_the_caller_may_decide_soonest_deadline_first(api):
    later, sooner, never = waiting(api), waiting(api), waiting(api)
    now = timezone.now()
    Suspension.objects.filter(execution_id=later).update(expires_at=now + timedelta(hours=2))
    Suspension.objects.filter(execution_id=sooner).update(expires_at=now + timedelta(hours=1))

    response = api.get("/approvals?status=pending")

    assert response.status_code == 200
    body = response.json()
    assert [item["execution_id"] for item in body["items"]] == [sooner, later, never]
    assert body["has_more"] is False
    item = body["items"][0]
    assert item["step_key"] == "approval" and item["workflow_id"] == "test-approval"
    assert item["topic"] == f"approval/{sooner}"
    assert item["data"] == {"amount": 7}
    assert item["approval_url"].endswith(f"/approve/{sooner}/")
    assert "count" not in body  # no COUNT over a million pending rows


def test_approvals_paginate_with_has_more(api):
    ids = [waiting(api) for _ in range(3)]

    first = api.get("/approvals?limit=2").json()
    second = api.get("/approvals?limit=2&offset=2").json()

    assert [i["execution_id"] for i in first["items"] + second["items"]] == ids
    assert (first["has_more"], second["has_more"]) == (True, False)


def test_approvals_leave_out_what_the_caller_may_not_decide(api):
    waiting(api)

    response = api.get("/approvals", key=api.viewer_key)

    assert response.status_code == 200
    assert response.json()["items"] == []


def test_approvals_leave_out_decided_ones_and_filter_by_workflow(api):
    decided, pending = waiting(api), waiting(api)
    charged = charge(api)
    api.post(*by_resume(decided, "approval", {"approved": True}))

    everything = api.get("/approvals").json()["items"]
    charges = api.get("/approvals?workflow_id=charge-customer").json()["items"]

    # The charge's approval has a deadline (2 h): it comes before one without.
    assert [i["execution_id"] for i in everything] == [charged, pending]
    assert [i["execution_id"] for i in charges] == [charged]


@pytest.mark.parametrize("query", ["status=resumed", "limit=0", "limit=201", "offset=-1"])
def test_bad_approval_queries_are_422(api, query):
    assert api.get(f"/approvals?{query}").status_code == 422
