"""The console in a real browser against polos_run (its worker included), in this run's mode.

One server for the module; each test makes its own users and executions in the test database,
which the server shares (and which pytest-django empties after each test). Waits are on
conditions (Playwright's ``expect``, database polls), never on fixed sleeps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, expect

import tests.support.flows_console  # noqa: F401 - registers the console's test workflows
from approvals.models import ApproverRule
from polos_site.celery import app as celery_app
from tests.support.processes import PolosServer, polos_run, wait_until
from workflows import services
from workflows.models import Execution, Suspension, WorkflowDefinition

CONSOLE_FLOWS = "tests.support.flows_console"
AXE_JS = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# Screenshots go to a temporary folder; POLOS_SCREENSHOTS_DIR=docs/screenshots refreshes the
# README's.
SCREENSHOTS_ENV = "POLOS_SCREENSHOTS_DIR"
WAIT_MS = 15_000
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 375, "height": 812}

User = get_user_model()
expect.set_options(timeout=WAIT_MS)


# Transactional: what a test writes is committed, so the server sees it; the marker is also
# what makes pytest-django create the test database for this module at all.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolosServer]:
    """One polos_run for the module, loading the console's test workflows."""
    # The same secret as this process: sessions made here (``browser_as``) are valid there.
    env = {"POLOS_WORKFLOW_MODULES": CONSOLE_FLOWS, "DJANGO_SECRET_KEY": settings.SECRET_KEY}
    with polos_run(args=["--no-demo-user"], env=env) as running:
        if not settings.EMBEDDED:
            # /healthz answers before the worker child consumes: wait for it to run a task.
            marker = tmp_path_factory.mktemp("worker") / "ready"
            celery_app.send_task("tests.marker", args=[str(marker), "ready"])
            wait_until(marker.exists, timeout=90, what="polos_run's worker to consume")
        yield running


# -- helpers ----------------------------------------------------------------------------------


def user(username: str, **flags: Any) -> Any:
    return User.objects.create_user(username, password=flags.pop("password", None), **flags)


def superuser(username: str) -> Any:
    return user(username, is_staff=True, is_superuser=True)


def browser_as(browser: Browser, server: PolosServer, who: Any, **options: Any) -> BrowserContext:
    """A browser context logged in as ``who`` (a session made here, as a login would)."""
    client = Client()
    client.force_login(who)
    context = browser.new_context(viewport=options.pop("viewport", DESKTOP), **options)
    context.set_default_timeout(WAIT_MS)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.base_url}]
    )
    return context


def start_waiting(workflow_id: str, payload: dict[str, Any], who: Any = None) -> Execution:
    """Start an execution and bring it to its first decision.

    It is advanced here as well as by the server's worker: in embedded mode the server's broker
    lives in the server's memory and never hears of executions started in this process.
    """
    execution, _ = services.execution_start(workflow_id=workflow_id, payload=payload, user=who)
    services.execution_advance(execution_id=execution.pk)
    return wait_for_status(execution, Execution.Status.WAITING)


def wait_for_status(execution: Execution, status: str) -> Execution:
    def reached() -> bool:
        execution.refresh_from_db()
        return execution.status == status

    wait_until(reached, timeout=WAIT_MS / 1000, what=f"execution {execution.pk} to be {status}")
    return execution


def wait_for_suspension(execution: Execution, step_key: str) -> Suspension:
    found: list[Suspension] = []

    def exists() -> bool:
        found[:] = Suspension.objects.filter(execution=execution, step_key=step_key)
        return bool(found)

    wait_until(exists, timeout=WAIT_MS / 1000, what=f"suspension {step_key}")
    return found[0]


def wait_live(page: Page, region: str) -> None:
    expect(page.locator(f"#{region}")).to_have_attribute("data-live-state", "live")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_JS.read_text())
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
            }));
        }"""
    )


def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    if not configured:
        return tmp_path_factory.mktemp("screenshots")
    path = Path(configured)
    if not path.is_absolute():
        path = Path(__file__).resolve().parents[2] / path
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the tests --------------------------------------------------------------------------------


def test_inbox_updates_live_and_an_approval_with_comment_completes_the_execution(
    browser: Browser, server: PolosServer
) -> None:
    user("ada", is_staff=True, is_superuser=True, password="ada's password 1")
    integration = user("integration")
    _, api_key = services.api_key_create(name="browser test", user=integration)
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    inbox = context.new_page()

    # Logging in from the inbox's address comes back to the inbox.
    inbox.goto(f"{server.base_url}/approvals/")
    inbox.get_by_label("Username").fill("ada")
    inbox.get_by_label("Password").fill("ada's password 1")
    inbox.get_by_role("button", name="Log in").click()
    expect(inbox).to_have_url(f"{server.base_url}/approvals/")
    wait_live(inbox, "inbox-list")
    inbox.evaluate("() => { window.stayedOnThePage = true; }")

    started = httpx.post(
        f"{server.base_url}/api/v1/workflows/charge-customer/run",
        json={"payload": {"customer_id": "cus_42", "amount": 4200, "currency": "EUR"}},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert started.status_code == 201, started.text
    execution_id = started.json()["execution_id"]

    item = inbox.locator(f'li[data-execution="{execution_id}"]')
    expect(item).to_be_visible()
    expect(item).to_contain_text("Approve this charge?")
    expect(item).to_contain_text("1 h 59 min left")
    assert inbox.evaluate("() => window.stayedOnThePage") is True  # no reload

    approval = context.new_page()
    approval.goto(inbox.url)
    approval.locator(f'li[data-execution="{execution_id}"]').get_by_role(
        "link", name="Review"
    ).click()
    expect(approval.get_by_role("heading", name="Approve this charge?")).to_be_visible()
    request = approval.locator("section", has=approval.get_by_role("heading", name="Request"))
    expect(request).to_contain_text("Customer ID")
    expect(request).to_contain_text("cus_42")
    expect(request).to_contain_text("4,200")
    approval.get_by_label("Approve the charge").check()
    approval.get_by_label("Comment").fill("Known customer, contract signed")
    approval.get_by_role("button", name="Submit decision").click()

    expect(approval.get_by_test_id("outcome")).to_contain_text("Approved by ada")
    expect(approval.get_by_test_id("decision-comment")).to_have_text(
        "Known customer, contract signed"
    )
    # The decided approval leaves the inbox that stayed open, again without a reload.
    expect(item).to_have_count(0)
    expect(inbox.locator("#inbox-list")).to_contain_text("Nothing is waiting for you")

    approval.get_by_role("link", name="Follow the execution").click()
    expect(approval.get_by_test_id("execution-status")).to_have_attribute(
        "data-status", "completed"
    )
    timeline = approval.get_by_test_id("timeline")
    expect(timeline).to_contain_text("Approved")
    expect(timeline).to_contain_text("by ada")
    expect(timeline).to_contain_text("Known customer, contract signed")
    expect(approval.get_by_test_id("result")).to_contain_text("charged")
    context.close()


def test_multi_stage_manager_approves_finance_rejects_and_history_shows_both(
    browser: Browser, server: PolosServer
) -> None:
    services.workflow_definitions_sync()
    manager, finance = user("mona"), user("finn")
    definition = WorkflowDefinition.objects.get(workflow_id="multi-stage-approval")
    ApproverRule.objects.create(workflow=definition, step_key="manager_approval").users.add(manager)
    ApproverRule.objects.create(workflow=definition, step_key="finance_approval").users.add(finance)
    execution = start_waiting(
        "multi-stage-approval", {"item": "GPU server", "amount": 38000, "requester": "dana"}
    )
    mona = browser_as(browser, server, manager).new_page()
    finn = browser_as(browser, server, finance).new_page()
    finn.goto(f"{server.base_url}/approvals/")
    wait_live(finn, "inbox-list")
    expect(finn.locator("#inbox-list")).to_contain_text("Nothing is waiting for you")

    mona.goto(f"{server.base_url}/approve/{execution.pk}/")
    expect(mona.get_by_role("heading", name="Manager approval")).to_be_visible()
    mona.get_by_label("Comment").fill("Needed for the new training cluster")
    mona.get_by_role("button", name="Approve").click()
    expect(mona.get_by_test_id("outcome")).to_contain_text("Approved by mona")

    # The finance stage reaches the finance approver's open inbox by itself.
    finance_item = finn.locator(
        f'li[data-execution="{execution.pk}"][data-step="finance_approval"]'
    )
    expect(finance_item).to_be_visible()
    finance_item.get_by_role("link", name="Review").click()
    stages = finn.locator('[data-stage="manager_approval"]')
    expect(stages).to_contain_text("Approved")
    expect(stages).to_contain_text("mona")
    expect(stages).to_contain_text("Needed for the new training cluster")
    finn.get_by_label("Comment").fill("Over this quarter's budget")
    finn.get_by_role("button", name="Reject").click()
    expect(finn.get_by_test_id("outcome")).to_contain_text("Rejected by finn")

    finn.get_by_role("link", name="History").click()
    rows = finn.locator(f'tr[data-execution="{execution.pk}"]')
    expect(rows).to_have_count(2)
    manager_row = rows.and_(finn.locator('[data-step="manager_approval"]'))
    finance_row = rows.and_(finn.locator('[data-step="finance_approval"]'))
    expect(manager_row).to_contain_text("Approved")
    expect(manager_row).to_contain_text("mona")
    expect(manager_row).to_contain_text("Needed for the new training cluster")
    expect(finance_row).to_contain_text("Rejected")
    expect(finance_row).to_contain_text("finn")
    expect(finance_row).to_contain_text("Over this quarter's budget")

    finance_row.get_by_role("link", name=re.compile("Open record")).click()
    expect(finn.get_by_test_id("execution-status")).to_have_attribute("data-status", "completed")
    expect(finn.get_by_test_id("result")).to_contain_text("rejected_by_finance")
    decisions = finn.get_by_test_id("timeline").locator('[data-kind="decision"]')
    expect(decisions).to_have_count(2)
    expect(decisions.nth(0)).to_contain_text("mona")
    expect(decisions.nth(1)).to_contain_text("finn")
    mona.context.close()
    finn.context.close()


def test_second_approver_sees_already_decided_by_the_first(
    browser: Browser, server: PolosServer
) -> None:
    first, second = superuser("ayla"), superuser("bert")
    execution = start_waiting("console-simple", {"summary": "Rotate the signing keys"})
    url = f"{server.base_url}/approve/{execution.pk}/"
    ayla = browser_as(browser, server, first).new_page()
    bert = browser_as(browser, server, second).new_page()
    ayla.goto(url)
    bert.goto(url)
    expect(bert.get_by_role("button", name="Reject")).to_be_visible()

    # By keyboard: from the comment, Tab reaches Approve; Enter presses it.
    ayla.get_by_label("Comment").focus()
    ayla.keyboard.press("Tab")
    expect(ayla.get_by_role("button", name="Approve")).to_be_focused()
    ayla.keyboard.press("Enter")
    expect(ayla.get_by_test_id("outcome")).to_contain_text("Approved by ayla")
    # Bert's page, still open with its form, hears of it ...
    expect(bert.get_by_text("Decided elsewhere")).to_be_visible()
    # ... and submitting anyway records nothing.
    bert.get_by_role("button", name="Reject").click()

    conflict = bert.get_by_test_id("conflict")
    expect(conflict).to_contain_text("already decided by ayla at")
    expect(conflict).to_contain_text("Your submission was not recorded")
    decided = Suspension.objects.get(execution=execution)
    assert (decided.decided_by, decided.decision["approved"]) == (first, True)
    ayla.context.close()
    bert.context.close()


def test_user_without_permission_gets_403_and_sees_nothing_in_the_inbox(
    browser: Browser, server: PolosServer
) -> None:
    execution = start_waiting("console-simple", {"summary": "Grant production access"})
    page = browser_as(browser, server, user("otto")).new_page()

    page.goto(f"{server.base_url}/approvals/")
    wait_live(page, "inbox-list")
    expect(page.locator("#inbox-list")).to_contain_text("Nothing is waiting for you")
    expect(page.get_by_text("Grant production access")).to_have_count(0)

    for path in (f"/approve/{execution.pk}/", f"/executions/{execution.pk}/"):
        response = page.goto(f"{server.base_url}{path}")
        assert response is not None and response.status == 403
        expect(page.get_by_test_id("forbidden")).to_be_visible()
        expect(page.get_by_text("Grant production access")).to_have_count(0)
    services.execution_cancel(execution_id=execution.pk)
    page.context.close()


def test_form_refuses_invalid_input_with_messages_and_valid_input_reaches_the_workflow(
    browser: Browser, server: PolosServer
) -> None:
    execution = start_waiting("console-expense", {"employee": "Eve Martin", "total": 182.4})
    page = browser_as(browser, server, superuser("vera")).new_page()
    page.goto(f"{server.base_url}/approve/{execution.pk}/expense_review/")

    page.get_by_label("Amount to reimburse").fill("lots")
    page.get_by_label("Note for the requester").fill("Receipt attached")
    page.get_by_role("button", name="Submit decision").click()

    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("There are problems with your decision")
    for name, message in [
        ("approved", "This field is required."),
        ("cost_center", "This field is required."),
        ("amount", "Enter a number."),
        ("category", "This field is required."),
    ]:
        expect(page.locator(f'[data-field="{name}"] .field-error')).to_contain_text(message)
    expect(page.get_by_label("Amount to reimburse")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Note for the requester")).to_have_value("Receipt attached")
    assert Suspension.objects.get(execution=execution).status == Suspension.Status.PENDING

    page.locator('[data-field="approved"]').get_by_label("Yes").check()
    page.get_by_label("Cost center").fill("CC-7")
    page.get_by_label("Amount to reimburse").fill("99.50")
    page.get_by_label("Category").select_option("meals")
    page.get_by_label("Pay out urgently").check()
    page.get_by_role("button", name="Submit decision").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Approved by vera")

    wait_for_status(execution, Execution.Status.COMPLETED)
    assert execution.result == {
        "decision": {
            "approved": True,
            "cost_center": "CC-7",
            "amount": 99.5,
            "category": "meals",
            "urgent": True,
            "note": "Receipt attached",
        },
        "decided_by": "vera",
    }
    page.context.close()


def test_pages_have_no_axe_violations_and_are_captured_at_desktop_and_mobile_width(
    browser: Browser, server: PolosServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = screenshots_dir(tmp_path_factory)
    for active in Execution.objects.filter(status__in=Execution.ACTIVE):
        services.execution_cancel(execution_id=active.pk)
    maria, frank = superuser("maria"), superuser("frank")
    charge = start_waiting(
        "charge-customer",
        {
            "customer_id": "cus_8841",
            "amount": 4200,
            "currency": "EUR",
            "description": "Annual enterprise licence",
        },
        maria,
    )
    start_waiting("data-deletion", {"dataset": "marketing_leads_2019", "rows": 120431})
    expense = start_waiting(
        "console-expense",
        {
            "employee": "Eve Martin",
            "total": 182.4,
            "lines": [
                {"item": "Train Paris-Lyon", "amount": 96.0},
                {"item": "Hotel, one night", "amount": 86.4},
            ],
        },
        frank,
    )
    purchase = start_waiting(
        "multi-stage-approval", {"item": "Office chairs", "amount": 14500, "requester": "li"}, frank
    )
    services.suspension_resolve(
        execution_id=purchase.pk,
        step_key="manager_approval",
        data={"approved": True, "comment": "Replacing the broken chairs on floor 3"},
        user=maria,
    )
    services.execution_advance(execution_id=purchase.pk)
    wait_for_suspension(purchase, "finance_approval")
    pages = {
        "inbox": "/approvals/",
        "approval": f"/approve/{charge.pk}/",
        "approval-form": f"/approve/{expense.pk}/",
        "approval-stage-two": f"/approve/{purchase.pk}/finance_approval/",
        "history": "/approvals/history/",
    }
    found: dict[str, list[dict[str, Any]]] = {}
    for width, viewport in (("desktop", DESKTOP), ("mobile", MOBILE)):
        page = browser_as(browser, server, maria, viewport=viewport).new_page()
        for name, path in pages.items():
            page.goto(f"{server.base_url}{path}")
            if name == "inbox":
                wait_live(page, "inbox-list")
            found[f"{name} ({width})"] = axe_violations(page)
            page.screenshot(path=out / f"{name}-{width}.png", full_page=True)
        # A refused form, with its messages beside the fields.
        page.goto(f"{server.base_url}/approve/{expense.pk}/")
        page.get_by_role("button", name="Submit decision").click()
        expect(page.locator("[data-error-summary]")).to_be_visible()
        found[f"approval-errors ({width})"] = axe_violations(page)
        page.screenshot(path=out / f"approval-errors-{width}.png", full_page=True)
        if width == "desktop":
            services.suspension_resolve(
                execution_id=purchase.pk,
                step_key="finance_approval",
                data={"approved": False, "comment": "Please get a second quote first"},
                user=frank,
            )
            services.execution_advance(execution_id=purchase.pk)
            wait_for_status(purchase, Execution.Status.COMPLETED)
        page.goto(f"{server.base_url}/executions/{purchase.pk}/")
        wait_live(page, "execution-body")
        found[f"execution ({width})"] = axe_violations(page)
        page.screenshot(path=out / f"execution-{width}.png", full_page=True)
        page.context.close()
    anonymous = browser.new_context(viewport=DESKTOP).new_page()
    anonymous.goto(f"{server.base_url}/approvals/")
    found["login"] = axe_violations(anonymous)
    anonymous.context.close()

    assert {page: v for page, v in found.items() if v} == {}
    assert (out / "inbox-mobile.png").stat().st_size > 0
