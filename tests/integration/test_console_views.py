"""The console's pages through Django's test client: what they show, what they refuse."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

import tests.support.flows_console  # noqa: F401 - registers the console's test workflows
from workflows import services
from workflows.models import Execution, StepOutput, Suspension

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def start_waiting(workflow_id: str, payload: dict[str, Any], user: Any = None) -> Execution:
    """Start an execution and run it in this process until it waits for a decision."""
    execution, _ = services.execution_start(workflow_id=workflow_id, payload=payload, user=user)
    services.execution_advance(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.WAITING
    return execution


def run(execution: Execution) -> Execution:
    services.execution_advance(execution_id=execution.pk)
    execution.refresh_from_db()
    return execution


def text(response: Any) -> str:
    """The response's visible text, whitespace collapsed (for phrases split by markup)."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()


@pytest.fixture
def approver() -> Any:
    return User.objects.create_user("ann", password="pw", is_superuser=True, is_staff=True)


@pytest.fixture
def second_approver() -> Any:
    return User.objects.create_user("bob", password="pw", is_superuser=True, is_staff=True)


@pytest.fixture
def outsider() -> Any:
    return User.objects.create_user("olga", password="pw")


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# -- login ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/approvals/", "/approvals/history/", "/approvals/fragment/"])
def test_pages_redirect_anonymous_users_to_login_and_back(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_approval_page_redirects_to_login_and_back_after_logging_in(approver: Any) -> None:
    execution = start_waiting("console-simple", {"summary": "new laptop"})
    url = f"/approve/{execution.pk}/"
    client = Client()

    first = client.get(url)
    login_page = client.get(first["Location"])
    logged_in = client.post("/accounts/login/", {"username": "ann", "password": "pw", "next": url})

    assert first.status_code == 302 and first["Location"] == f"/accounts/login/?next={url}"
    assert f'name="next" value="{url}"' in login_page.content.decode()
    assert logged_in.status_code == 302 and logged_in["Location"] == url
    assert client.get(url).status_code == 200


# -- the approval page ------------------------------------------------------------------------


def test_approval_page_shows_request_deadline_and_approve_reject(approver: Any) -> None:
    execution = start_waiting(
        "console-simple",
        {"summary": "new laptop", "items": [{"sku": "L1", "qty": 2}]},
        user=approver,
    )

    response = client_for(approver).get(f"/approve/{execution.pk}/")
    page = text(response)

    assert response.status_code == 200
    assert "console-simple" in page and "Started by ann" in page
    assert "Summary new laptop" in page
    assert re.search(r"<th scope=\"col\">SKU</th>", response.content.decode())
    assert "No deadline" in page
    assert 'value="approve"' in response.content.decode()
    assert 'value="reject"' in response.content.decode()
    assert "{&quot;" not in response.content.decode() and '{"' not in page


def test_approve_with_comment_records_the_decision_and_shows_the_outcome(approver: Any) -> None:
    execution = start_waiting("console-simple", {"summary": "new laptop"})
    client = client_for(approver)
    url = f"/approve/{execution.pk}/sign_off/"

    response = client.post(
        url, {"verdict": "approve", "comment": "Within budget"}, HTTP_USER_AGENT="pytest-agent"
    )

    assert response.status_code == 302 and response["Location"] == url
    suspension = Suspension.objects.get(execution=execution, step_key="sign_off")
    assert suspension.status == Suspension.Status.RESUMED
    assert suspension.decision == {"approved": True, "comment": "Within budget"}
    assert suspension.decided_by == approver
    assert suspension.decided_ip == "127.0.0.1"
    assert suspension.decided_user_agent == "pytest-agent"
    outcome = text(client.get(url))
    assert "You approved" in outcome
    assert "Approved by ann" in outcome and "Within budget" in outcome
    assert run(execution).result == {"approved": True, "by": "ann"}


def test_missing_verdict_is_refused_and_nothing_is_consumed(approver: Any) -> None:
    execution = start_waiting("console-simple", {})

    response = client_for(approver).post(
        f"/approve/{execution.pk}/sign_off/", {"comment": "forgot to click"}
    )

    assert response.status_code == 400
    assert "Choose Approve or Reject." in text(response)
    assert "forgot to click" in response.content.decode()
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.PENDING


def test_second_submit_shows_already_decided_by_whom_and_when(
    approver: Any, second_approver: Any
) -> None:
    execution = start_waiting("console-simple", {})
    url = f"/approve/{execution.pk}/sign_off/"
    client_for(approver).post(url, {"verdict": "reject", "comment": "no"})

    response = client_for(second_approver).post(url, {"verdict": "approve"})

    assert response.status_code == 409
    page = text(response)
    decided_at = Suspension.objects.get(execution=execution).decided_at
    assert "This approval was already decided by ann at" in page
    assert f'datetime="{decided_at.isoformat()}"' in response.content.decode()
    assert "Your submission was not recorded" in page
    assert Suspension.objects.get(execution=execution).decision == {
        "approved": False,
        "comment": "no",
    }


def test_user_without_permission_gets_403_on_page_and_post_and_nothing_is_consumed(
    outsider: Any,
) -> None:
    execution = start_waiting("console-simple", {})
    client = client_for(outsider)

    page = client.get(f"/approve/{execution.pk}/")
    step_page = client.get(f"/approve/{execution.pk}/sign_off/")
    post = client.post(f"/approve/{execution.pk}/sign_off/", {"verdict": "approve"})
    execution_page = client.get(f"/executions/{execution.pk}/")
    fragment = client.get(f"/executions/{execution.pk}/fragment/")

    assert [page.status_code, step_page.status_code, post.status_code] == [403, 403, 403]
    assert [execution_page.status_code, fragment.status_code] == [403, 403]
    assert "You may not see this" in text(post)
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.PENDING


def test_unknown_execution_or_step_is_404(approver: Any) -> None:
    execution = start_waiting("console-simple", {})
    client = client_for(approver)

    assert client.get(f"/approve/{uuid.uuid4()}/").status_code == 404
    assert client.get(f"/approve/{execution.pk}/no_such_step/").status_code == 404
    assert client.get(f"/executions/{uuid.uuid4()}/").status_code == 404


def test_form_fields_are_rendered_with_labels_and_refused_input_keeps_values(
    approver: Any,
) -> None:
    execution = start_waiting("console-expense", {"employee": "Eve", "total": 120.5})
    client = client_for(approver)
    url = f"/approve/{execution.pk}/expense_review/"

    form_page = client.get(url).content.decode()
    refused = client.post(
        url, {"cost_center": "  ", "amount": "lots", "category": "yachts", "note": "keep me"}
    )
    page = text(refused)

    for field_id, label in [
        ("field-cost_center", "Cost center"),
        ("field-amount", "Amount to reimburse"),
        ("field-category", "Category"),
        ("field-urgent", "Pay out urgently"),
        ("field-note", "Note for the requester"),
    ]:
        assert f'for="{field_id}"' in form_page and label in form_page
    assert 'type="radio" id="field-approved"' in form_page
    assert refused.status_code == 400
    assert "There are problems with your decision" in page
    assert "Approve the expense This field is required." in page or (
        "Error: This field is required." in page
    )
    assert "Error: Enter a number." in page
    assert "Error: Choose one of: travel, meals, equipment." in page
    body = refused.content.decode()
    assert 'id="field-amount" name="amount" value="lots"' in body
    assert "keep me</textarea>" in body
    assert 'aria-invalid="true"' in body
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.PENDING


def test_valid_form_input_reaches_the_workflow_typed(approver: Any) -> None:
    execution = start_waiting("console-expense", {"employee": "Eve", "total": 120.5})

    response = client_for(approver).post(
        f"/approve/{execution.pk}/expense_review/",
        {
            "approved": "true",
            "cost_center": "CC-7",
            "amount": "99.5",
            "category": "meals",
            "urgent": "true",
            "note": "Receipt ok",
        },
    )

    assert response.status_code == 302
    assert run(execution).result == {
        "decision": {
            "approved": True,
            "cost_center": "CC-7",
            "amount": 99.5,
            "category": "meals",
            "urgent": True,
            "note": "Receipt ok",
        },
        "decided_by": "ann",
    }


def test_pydantic_schema_is_rendered_as_fields_and_validated(approver: Any) -> None:
    execution = start_waiting("console-refund", {"order_id": "o-1", "total": 40})
    client = client_for(approver)
    url = f"/approve/{execution.pk}/refund_decision/"

    form_page = client.get(url).content.decode()
    refused = client.post(url, {"approved": "true", "refund_amount": "-3", "reason": "x"})
    accepted = client.post(
        url,
        {"approved": "false", "refund_amount": "12", "reason": "Damaged box", "channel": "bank"},
    )

    assert 'type="radio" id="field-approved"' in form_page
    assert 'id="field-refund_amount" name="refund_amount" value="" inputmode="decimal"' in form_page
    assert '<option value="voucher">Voucher</option>' in form_page
    assert 'for="field-reason"' in form_page
    assert refused.status_code == 400
    assert "greater than or equal to 0" in text(refused)
    assert "at least 3 characters" in text(refused)
    assert accepted.status_code == 302
    assert run(execution).result == {
        "decision": {
            "approved": False,
            "refund_amount": 12.0,
            "reason": "Damaged box",
            "channel": "bank",
        }
    }


def test_bare_url_lists_several_pending_approvals(approver: Any) -> None:
    execution = start_waiting("console-simple", {})
    Suspension.objects.create(
        execution=execution, workflow_id=execution.workflow_id, step_key="second_opinion"
    )

    response = client_for(approver).get(f"/approve/{execution.pk}/")

    assert response.status_code == 200
    assert "Several decisions are waiting" in text(response)
    assert f'href="/approve/{execution.pk}/sign_off/"' in response.content.decode()
    assert f'href="/approve/{execution.pk}/second_opinion/"' in response.content.decode()


# -- multi-stage history on the approval page --------------------------------------------------


def test_later_stage_shows_earlier_decisions_with_names_and_comments(
    approver: Any, second_approver: Any
) -> None:
    execution = start_waiting(
        "multi-stage-approval", {"item": "Server rack", "amount": 25000, "requester": "dana"}
    )
    services.suspension_resolve(
        execution_id=execution.pk,
        step_key="manager_approval",
        data={"approved": True, "comment": "Needed for the new region"},
        user=approver,
    )
    run(execution)

    response = client_for(second_approver).get(f"/approve/{execution.pk}/")
    page = text(response)

    assert response.status_code == 200
    assert "Finance approval" in page
    assert "Earlier stages manager_approval Approved by ann" in page
    assert "Needed for the new region" in page
    # What the step adds to the request: its stage and the manager's comment.
    assert "Stage finance" in page


# -- inbox --------------------------------------------------------------------------------------


def test_inbox_lists_pending_soonest_deadline_first_with_time_left(approver: Any) -> None:
    later = start_waiting("console-expense", {"employee": "Eve"})
    sooner = start_waiting("console-refund", {"order_id": "o-9"})
    no_deadline = start_waiting("console-simple", {"summary": "x"})
    Suspension.objects.filter(execution=sooner).update(
        expires_at=timezone.now() + timedelta(minutes=30)
    )

    response = client_for(approver).get("/approvals/")
    body = response.content.decode()

    positions = [body.index(f'data-execution="{e.pk}"') for e in (sooner, later, no_deadline)]
    assert positions == sorted(positions)
    assert "3 approvals waiting for a decision" in text(response)
    assert re.search(r"(29|30) min left", text(response))
    assert "No deadline" in text(response)


def test_inbox_shows_nothing_to_a_user_without_permission(outsider: Any) -> None:
    start_waiting("console-simple", {"summary": "secret"})

    response = client_for(outsider).get("/approvals/")
    fragment = client_for(outsider).get("/approvals/fragment/")

    assert response.status_code == 200
    assert "Nothing is waiting for you" in text(response)
    assert "secret" not in response.content.decode()
    assert "sign_off" not in fragment.content.decode()


def test_inbox_fragment_is_the_list_alone(approver: Any) -> None:
    execution = start_waiting("console-simple", {"summary": "x"})

    fragment = client_for(approver).get("/approvals/fragment/")

    assert fragment.status_code == 200
    assert fragment["Cache-Control"] == "no-store"
    assert "<html" not in fragment.content.decode()
    assert f'data-execution="{execution.pk}"' in fragment.content.decode()


def test_inbox_queries_do_not_grow_with_the_number_pending(
    approver: Any, django_assert_max_num_queries: Any
) -> None:
    for index in range(60):
        start_waiting("console-simple", {"summary": f"request {index}"})
    client = client_for(approver)

    with django_assert_max_num_queries(8):
        response = client.get("/approvals/")

    assert response.content.decode().count('<li class="approval') == 50


def test_inbox_pages_by_fifty(approver: Any) -> None:
    execution = start_waiting("console-simple", {})
    Suspension.objects.bulk_create(
        Suspension(execution=execution, workflow_id="console-simple", step_key=f"extra-{i}")
        for i in range(60)
    )
    client = client_for(approver)

    first = client.get("/approvals/")
    second = client.get("/approvals/?page=2")

    assert first.content.decode().count('<li class="approval') == 50
    assert second.content.decode().count('<li class="approval') == 11
    assert "Page 2 of 2" in text(second)


# -- history and execution page ------------------------------------------------------------------


def decided_multi_stage(manager: Any, finance: Any) -> Execution:
    execution = start_waiting(
        "multi-stage-approval", {"item": "Server rack", "amount": 25000, "requester": "dana"}
    )
    services.suspension_resolve(
        execution_id=execution.pk,
        step_key="manager_approval",
        data={"approved": True, "comment": "Go ahead"},
        user=manager,
    )
    run(execution)
    services.suspension_resolve(
        execution_id=execution.pk,
        step_key="finance_approval",
        data={"approved": False, "comment": "Over budget"},
        user=finance,
    )
    return run(execution)


def test_history_lists_decisions_and_filters_them(approver: Any, second_approver: Any) -> None:
    execution = decided_multi_stage(approver, second_approver)
    timed_out = start_waiting("data-deletion", {"dataset": "logs", "rows": 3})
    Suspension.objects.filter(execution=timed_out).update(expires_at=timezone.now())
    services.suspensions_expire_due()
    client = client_for(approver)

    everything = text(client.get("/approvals/history/"))
    rejected = client.get("/approvals/history/?decision=rejected").content.decode()
    by_ann = client.get("/approvals/history/?approver=ann").content.decode()
    timeouts = text(client.get("/approvals/history/?decision=timed_out"))
    other_workflow = text(client.get("/approvals/history/?workflow=console-simple"))
    today = timezone.now().date()
    in_range = text(client.get(f"/approvals/history/?from={today}&to={today}"))
    before = text(client.get(f"/approvals/history/?to={today - timedelta(days=1)}"))

    assert "3 decisions" in everything
    assert "Approved “Go ahead”" in everything and "Rejected “Over budget”" in everything
    assert (
        'data-step="finance_approval"' in rejected
        and 'data-step="manager_approval"' not in rejected
    )
    assert 'data-step="manager_approval"' in by_ann and 'data-step="finance_approval"' not in by_ann
    assert "1 decision " in timeouts and "Timed out, default applied" in timeouts
    assert "No decisions match these filters" in other_workflow
    assert "3 decisions" in in_range
    assert "No decisions match these filters" in before
    assert f'href="/executions/{execution.pk}/"' in rejected


def test_history_hides_decisions_the_user_may_not_see(
    approver: Any, second_approver: Any, outsider: Any
) -> None:
    decided_multi_stage(approver, second_approver)

    page = text(client_for(outsider).get("/approvals/history/"))

    assert "No decisions yet" in page


def test_execution_page_shows_the_multi_stage_timeline(approver: Any, second_approver: Any) -> None:
    execution = decided_multi_stage(approver, second_approver)

    response = client_for(approver).get(f"/executions/{execution.pk}/")
    page = text(response)

    assert response.status_code == 200
    assert execution.status == Execution.Status.COMPLETED
    assert re.search(
        r"Started .*Decision requested manager_approval .*Approved manager_approval by ann"
        r".*Go ahead.*Decision requested finance_approval .*Rejected finance_approval by bob"
        r".*Over budget.*Completed",
        page,
    ), page
    assert "Result Status rejected_by_finance Comment Over budget" in page
    assert f'data-live-socket="/ws/executions/{execution.pk}/"' in response.content.decode()


def test_execution_page_shows_timeout_with_default_applied(approver: Any) -> None:
    execution = start_waiting("data-deletion", {"dataset": "logs", "rows": 3})
    Suspension.objects.filter(execution=execution).update(expires_at=timezone.now())
    services.suspensions_expire_due()
    run(execution)

    page = text(client_for(approver).get(f"/executions/{execution.pk}/fragment/"))

    assert "Timed out, default applied deletion_approval" in page
    assert "Completed" in page and "Status timeout" in page


def test_execution_page_shows_a_failure(approver: Any) -> None:
    import tests.support.flows  # noqa: F401 - test-fails

    execution, _ = services.execution_start(workflow_id="test-fails", payload={})
    run(execution)

    page = text(client_for(approver).get(f"/executions/{execution.pk}/"))

    assert execution.status == Execution.Status.FAILED
    assert "Step failed charge" in page
    assert "the card was declined" in page


def test_starter_may_watch_their_execution(outsider: Any) -> None:
    execution = start_waiting("console-simple", {}, user=outsider)

    response = client_for(outsider).get(f"/executions/{execution.pk}/")

    assert response.status_code == 200
    assert "Waiting for your decision" not in text(response)
    assert StepOutput.objects.filter(execution=execution).count() == 0
