"""Who may call the API: API keys (created by command or admin), the console's session with
its CSRF token, and 401 for everyone else."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client

import tests.support.flows  # noqa: F401 - registers the test workflows
from tests.support.api import Api, advance, bearer, make_user
from workflows.models import ApiKey, Execution
from workflows.services import api_key_hash

pytestmark = pytest.mark.django_db

SOME_ID = str(uuid.uuid4())
ENDPOINTS = [
    ("get", "/workflows"),
    ("post", "/workflows/test-approval/run"),
    ("get", "/executions"),
    ("get", f"/executions/{SOME_ID}"),
    ("post", f"/executions/{SOME_ID}/resume"),
    ("post", f"/workflows/test-approval/executions/{SOME_ID}/resume"),
    ("post", f"/executions/{SOME_ID}/cancel"),
    ("get", "/events"),
    ("post", "/events"),
    ("get", "/approvals"),
]


@pytest.fixture
def api() -> Api:
    return Api.create()


def call(api: Api, method: str, path: str, headers: dict[str, str]):
    body = {"payload": {}} if method == "post" else None
    if method == "get":
        return api.client.get(path, headers=headers)
    return api.client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("pk_wrong"),
        bearer(""),
        {"Authorization": "Basic YW5uOnB3"},
        {"Authorization": "pk_no_scheme"},
    ],
    ids=["none", "wrong-key", "empty-key", "basic", "no-scheme"],
)
def test_requests_without_a_valid_key_are_401(api, method, path, headers):
    response = call(api, method, path, headers)

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_deactivated_key_is_401(api):
    ApiKey.objects.filter(user=api.approver).update(is_active=False)

    assert api.get("/workflows").status_code == 401


def test_the_key_of_an_inactive_user_is_401(api):
    api.approver.is_active = False
    api.approver.save(update_fields=["is_active"])

    assert api.get("/workflows").status_code == 401


def test_a_key_records_when_it_was_last_used(api):
    key = ApiKey.objects.get(user=api.approver)
    assert key.last_used_at is None

    api.get("/workflows")

    key.refresh_from_db()
    assert key.last_used_at is not None


def test_keys_are_stored_as_a_hash_and_a_short_prefix(api):
    key = ApiKey.objects.get(user=api.approver)

    assert key.key_hash == api_key_hash(api.approver_key)
    assert api.approver_key.startswith(key.prefix)
    assert len(key.prefix) <= 16
    assert api.approver_key not in (key.key_hash, key.prefix)


# -- the console's session ----------------------------------------------------------------------


def logged_in(user) -> tuple[Client, str]:
    """A browser-like client logged in as ``user``, with CSRF checks on, and its CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/accounts/login/")  # sets the csrftoken cookie
    return client, client.cookies["csrftoken"].value


def test_a_session_reads_without_a_csrf_token(api):
    client, _token = logged_in(api.approver)

    response = client.get("/api/v1/workflows")

    assert response.status_code == 200


def test_a_session_write_needs_the_csrf_token(api):
    client, token = logged_in(api.approver)
    body = {"payload": {"amount": 1}}

    refused = client.post("/api/v1/workflows/test-approval/run", body, "application/json")
    accepted = client.post(
        "/api/v1/workflows/test-approval/run",
        body,
        "application/json",
        headers={"X-CSRFToken": token},
    )

    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    assert accepted.status_code == 201
    assert Execution.objects.get().started_by == api.approver


def test_a_session_decides_with_the_same_permissions(api):
    execution_id = api.post("/workflows/test-approval/run", {"payload": {}}).json()["execution_id"]
    advance(execution_id)
    viewer, viewer_token = logged_in(api.viewer)
    approver, approver_token = logged_in(api.approver)
    body = {"step_key": "approval", "data": {"approved": True}}
    path = f"/api/v1/executions/{execution_id}/resume"

    forbidden = viewer.post(path, body, "application/json", headers={"X-CSRFToken": viewer_token})
    decided = approver.post(path, body, "application/json", headers={"X-CSRFToken": approver_token})

    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "forbidden"
    assert decided.status_code == 202


def test_an_anonymous_browser_gets_401_not_a_csrf_failure():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/api/v1/workflows/test-approval/run", {}, "application/json")

    assert response.status_code == 401


def test_a_key_needs_no_csrf_token_even_with_a_session_cookie(api):
    client, _token = logged_in(api.viewer)

    response = client.post(
        "/api/v1/workflows/test-approval/run",
        {"payload": {}},
        "application/json",
        headers=bearer(api.approver_key),
    )

    assert response.status_code == 201
    assert Execution.objects.get().started_by == api.approver  # the key's user, not the session's


# -- creating keys ------------------------------------------------------------------------------


def test_create_api_key_prints_a_working_key_alone_on_the_last_line(api):
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_key", "billing service", "--user", "vic", stdout=out, stderr=err)

    raw_key = out.getvalue().strip().splitlines()[-1]
    assert re.fullmatch(r"pk_[0-9a-f]{8}[A-Za-z0-9_-]{40,}", raw_key)
    stored = ApiKey.objects.get(name="billing service")
    assert stored.user == api.viewer and stored.key_hash == api_key_hash(raw_key)
    assert api.get("/workflows", key=raw_key).status_code == 200


def test_create_api_key_refuses_an_unknown_or_inactive_user():
    make_user("gone").__class__.objects.filter(username="gone").update(is_active=False)

    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_key", "k", "--user", "nobody", stdout=io.StringIO())
    with pytest.raises(CommandError, match="inactive"):
        call_command("create_api_key", "k", "--user", "gone", stdout=io.StringIO())
    assert not ApiKey.objects.exists()


def test_a_key_created_in_admin_is_shown_once_and_works(api):
    admin = make_user("root", superuser=True)
    client = Client()
    client.force_login(admin)

    response = client.post(
        "/admin/workflows/apikey/add/", {"name": "from admin", "user": api.viewer.pk}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    (message,) = [
        m.message for m in get_messages(response.wsgi_request) if "API key is" in m.message
    ]
    raw_key = re.search(r"(pk_\S+)", message)[1]
    stored = ApiKey.objects.get(name="from admin")
    assert stored.user == api.viewer and stored.key_hash == api_key_hash(raw_key)
    assert api.get("/workflows", key=raw_key).status_code == 200
    # Shown on the page after the redirect, then never again.
    assert raw_key in client.get(response["Location"]).content.decode()
    change_page = client.get(f"/admin/workflows/apikey/{stored.pk}/change/").content.decode()
    assert raw_key not in change_page and stored.key_hash not in change_page
    assert stored.prefix in change_page


def test_the_admin_deactivates_keys(api):
    admin = make_user("root", superuser=True)
    client = Client()
    client.force_login(admin)
    key = ApiKey.objects.get(user=api.viewer)

    client.post(
        "/admin/workflows/apikey/",
        {"action": "deactivate", "_selected_action": [key.pk]},
    )

    key.refresh_from_db()
    assert key.is_active is False
    assert api.get("/workflows", key=api.viewer_key).status_code == 401
