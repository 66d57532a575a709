"""Who may read and cancel through the API: staff, the starter, the workflow's approvers.
Anyone else is told the execution does not exist."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

import tests.support.flows  # noqa: F401 - registers the test workflows
from approvals.models import ApproverRule
from tests.support.api import Api, advance, key_for, make_user, sse_open
from workflows import services
from workflows.models import Execution, WorkflowDefinition

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Api:
    return Api.create()


@pytest.fixture
def waiting(api: Api) -> Execution:
    # given an execution started by ann (staff) and waiting for its approval
    execution, _ = services.execution_start(
        workflow_id="test-approval", payload={}, user=api.approver
    )
    return advance(execution.pk)


def test_an_unrelated_user_cannot_see_read_stream_or_cancel_an_execution(api, waiting):
    path = f"/executions/{waiting.pk}"

    assert api.get(path, key=api.viewer_key).status_code == 404
    stream = async_to_sync(sse_open)(f"{path}/events/stream", key=api.viewer_key)
    assert stream.status_code == 404
    assert api.post(f"{path}/cancel", key=api.viewer_key).status_code == 404
    listed = api.get("/executions", key=api.viewer_key).json()
    assert listed == {"items": [], "count": 0}
    events = api.get(f"/events?execution_id={waiting.pk}", key=api.viewer_key).json()
    assert events["events"] == []
    topic = async_to_sync(sse_open)(
        f"/events/stream?topic=approval/{waiting.pk}", key=api.viewer_key
    )
    assert topic.status_code == 403
    waiting.refresh_from_db()
    assert waiting.status == Execution.Status.WAITING


def test_the_starter_and_the_workflows_approvers_see_it(api, waiting):
    starter = make_user("sam")
    mine, _ = services.execution_start(workflow_id="test-approval", payload={}, user=starter)
    approver = make_user("pat")
    rule = ApproverRule.objects.create(
        workflow=WorkflowDefinition.objects.get(workflow_id="test-approval")
    )
    rule.users.add(approver)

    starter_view = api.get("/executions", key=key_for(starter)).json()
    approver_view = api.get("/executions", key=key_for(approver)).json()

    assert [item["execution_id"] for item in starter_view["items"]] == [str(mine.pk)]
    assert approver_view["count"] == 2
    assert api.get(f"/executions/{waiting.pk}", key=key_for(approver)).status_code == 200
    staff_view = api.get(f"/executions/{waiting.pk}")
    assert staff_view.status_code == 200 and staff_view.json()["status"] == "waiting"
