"""Workflows and executions over HTTP: list, start (idempotently), read, cancel."""

from __future__ import annotations

import uuid

import pytest

import tests.support.flows  # noqa: F401 - registers the test workflows
from tests.support.api import Api, advance
from workflows.models import Event, Execution, Suspension, WorkflowDefinition

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Api:
    return Api.create()


def start(api: Api, workflow_id: str = "test-approval", payload: dict | None = None) -> str:
    response = api.post(f"/workflows/{workflow_id}/run", {"payload": payload or {"amount": 7}})
    assert response.status_code == 201, response.json()
    return response.json()["execution_id"]


# -- GET /workflows ---------------------------------------------------------------------------


def test_workflows_are_listed_with_their_configuration(api):
    WorkflowDefinition.objects.update_or_create(
        workflow_id="test-typed", defaults={"enabled": False, "default_timeout": 60}
    )

    response = api.get("/workflows")

    assert response.status_code == 200
    workflows = {w["workflow_id"]: w for w in response.json()}
    assert {"charge-customer", "test-approval", "test-typed"} <= set(workflows)
    typed = workflows["test-typed"]
    assert typed["enabled"] is False and typed["default_timeout"] == 60
    assert typed["payload_schema"]["properties"].keys() == {"item", "amount"}
    assert workflows["test-approval"]["payload_schema"] is None
    assert workflows["charge-customer"]["description"]
    assert "slack_webhook_url" not in typed  # configuration, not secrets


# -- POST /workflows/{id}/run -----------------------------------------------------------------


def test_run_starts_an_execution_as_the_keys_user(api):
    response = api.post("/workflows/test-approval/run", {"payload": {"amount": 12}})

    assert response.status_code == 201
    body = response.json()
    assert body["workflow_id"] == "test-approval" and body["status"] == "queued"
    execution = Execution.objects.get(pk=body["execution_id"])
    assert execution.payload == {"amount": 12}
    assert execution.started_by == api.approver
    assert Event.objects.filter(execution=execution, event_type="execution_start").exists()


def test_the_same_idempotency_key_and_payload_answers_the_first_execution(api):
    key = {"Idempotency-Key": "order-17"}
    first = api.post("/workflows/test-approval/run", {"payload": {"amount": 1}}, headers=key)

    again = api.post("/workflows/test-approval/run", {"payload": {"amount": 1}}, headers=key)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert Execution.objects.count() == 1


def test_the_same_idempotency_key_with_another_payload_is_409(api):
    key = {"Idempotency-Key": "order-18"}
    api.post("/workflows/test-approval/run", {"payload": {"amount": 1}}, headers=key)

    response = api.post("/workflows/test-approval/run", {"payload": {"amount": 2}}, headers=key)

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert Execution.objects.count() == 1


def test_an_overlong_idempotency_key_is_422(api):
    response = api.post(
        "/workflows/test-approval/run", {"payload": {}}, headers={"Idempotency-Key": "k" * 256}
    )

    assert response.status_code == 422


def test_an_unknown_workflow_is_404(api):
    response = api.post("/workflows/no-such-flow/run", {"payload": {}})

    assert response.status_code == 404
    assert response.json() == {
        "detail": "no workflow 'no-such-flow' is registered",
        "code": "workflow_not_found",
    }


def test_an_invalid_payload_is_422_with_field_errors(api):
    response = api.post("/workflows/test-typed/run", {"payload": {"item": "pen", "amount": "x"}})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "payload_invalid"
    assert [e["field"] for e in body["errors"]] == ["amount"]
    assert not Execution.objects.exists()


def test_a_typed_payload_is_stored_validated(api):
    response = api.post("/workflows/test-typed/run", {"payload": {"item": "pen", "amount": "2"}})

    assert response.status_code == 201
    assert Execution.objects.get().payload == {"item": "pen", "amount": 2.0}


def test_a_disabled_workflow_is_409(api):
    WorkflowDefinition.objects.update_or_create(
        workflow_id="test-approval", defaults={"enabled": False}
    )

    response = api.post("/workflows/test-approval/run", {"payload": {}})

    assert response.status_code == 409
    assert response.json()["code"] == "workflow_disabled"


def test_a_run_without_a_body_is_422(api):
    response = api.client.post("/workflows/test-approval/run", headers=api._headers(None, None))

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# -- GET /executions --------------------------------------------------------------------------


def test_executions_are_listed_newest_first_with_a_count(api):
    ids = [start(api, payload={"amount": n}) for n in range(3)]

    response = api.get("/executions")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [item["execution_id"] for item in body["items"]] == ids[::-1]
    assert set(body["items"][0]) == {
        "execution_id",
        "workflow_id",
        "status",
        "created_at",
        "updated_at",
        "finished_at",
    }


def test_executions_filter_by_workflow_and_status_and_paginate(api):
    waiting = start(api)
    advance(waiting)
    start(api)
    typed = start(api, "test-typed", {"item": "a", "amount": 1})

    by_workflow = api.get("/executions?workflow_id=test-typed").json()
    by_status = api.get("/executions?status=waiting").json()
    page = api.get("/executions?limit=1&offset=1").json()

    assert [i["execution_id"] for i in by_workflow["items"]] == [typed]
    assert [i["execution_id"] for i in by_status["items"]] == [waiting]
    assert by_status["count"] == 1
    assert len(page["items"]) == 1 and page["count"] == 3


@pytest.mark.parametrize("query", ["status=sleeping", "limit=0", "limit=501", "offset=-1"])
def test_bad_list_queries_are_422(api, query):
    response = api.get(f"/executions?{query}")

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# -- GET /executions/{id} ---------------------------------------------------------------------


def test_an_execution_reads_with_its_steps_and_suspensions(api):
    execution_id = start(api)
    advance(execution_id)

    response = api.get(f"/executions/{execution_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["execution_id"] == execution_id
    assert body["status"] == "waiting"
    assert body["payload"] == {"amount": 7}
    assert body["result"] is None and body["error"] is None
    assert [s["step_key"] for s in body["steps"]] == ["step_a"]
    step = body["steps"][0]
    assert {"step_key", "status", "output", "error", "started_at", "finished_at"} <= set(step)
    (suspension,) = body["suspensions"]
    assert suspension["step_key"] == "approval" and suspension["status"] == "pending"
    assert suspension["data"] == {"amount": 7}
    assert {
        "expires_at",
        "created_at",
        "decided_at",
        "decided_by",
        "decision",
    } <= set(suspension)


def test_a_finished_execution_reads_with_result_and_decision(api):
    execution_id = start(api)
    advance(execution_id)
    api.post(
        f"/executions/{execution_id}/resume", {"step_key": "approval", "data": {"approved": True}}
    )
    advance(execution_id)

    body = api.get(f"/executions/{execution_id}").json()

    assert body["status"] == "completed"
    assert body["result"] == {"approved": True, "decided_by": "ann"}
    (suspension,) = body["suspensions"]
    assert suspension["decided_by"] == "ann" and suspension["decision"] == {"approved": True}


def test_a_failed_execution_reads_with_its_error(api):
    execution_id = start(api, "test-fails", {})
    advance(execution_id)

    body = api.get(f"/executions/{execution_id}").json()

    assert body["status"] == "failed"
    assert "declined" in body["error"]["message"]


@pytest.mark.parametrize("execution_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
def test_an_unknown_execution_is_404(api, execution_id):
    response = api.get(f"/executions/{execution_id}")

    assert response.status_code == 404
    assert response.json()["code"] == "execution_not_found"


# -- POST /executions/{id}/cancel -------------------------------------------------------------


def test_cancel_stops_a_waiting_execution_and_its_pending_approval(api):
    execution_id = start(api)
    advance(execution_id)

    response = api.post(f"/executions/{execution_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    suspension = Suspension.objects.get(execution_id=execution_id)
    assert suspension.status == Suspension.Status.CANCELLED
    assert suspension.decided_by == api.approver


def test_cancelling_a_finished_execution_is_409(api):
    execution_id = start(api)
    api.post(f"/executions/{execution_id}/cancel")

    response = api.post(f"/executions/{execution_id}/cancel")

    assert response.status_code == 409
    assert response.json()["code"] == "execution_finished"


@pytest.mark.parametrize("execution_id", [str(uuid.uuid4()), "nope"])
def test_cancelling_an_unknown_execution_is_404(api, execution_id):
    response = api.post(f"/executions/{execution_id}/cancel")

    assert response.status_code == 404
    assert response.json()["code"] == "execution_not_found"
