"""Bad input never gets a 500: one error shape for every failure, and the documentation."""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings

import tests.support.flows  # noqa: F401 - registers the test workflows
from tests.support.api import bearer, key_for, make_user
from workflows import selectors
from workflows.models import Execution

pytestmark = pytest.mark.django_db

RUN = "/api/v1/workflows/test-approval/run"


@pytest.fixture
def client() -> Client:
    return Client(headers=bearer(key_for(make_user("ann", staff=True))))


def post_raw(client: Client, path: str, body: bytes | str):
    return client.generic("POST", path, body, content_type="application/json")


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b'{"payload": {"amount": NaN}}',
        b'{"payload": {"amount": Infinity}}',
        b'{"payload": {"note": "a\\u0000b"}}',
        b'{"payload": {"a\\u0000": 1}}',
        b"\xff\xfe{}",
    ],
    ids=["syntax", "nan", "infinity", "nul-value", "nul-key", "not-utf8"],
)
def test_malformed_json_is_400(client, body):
    response = post_raw(client, RUN, body)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "the request body is not valid JSON",
        "code": "malformed_json",
    }
    assert not Execution.objects.exists()


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_422(client, body):
    response = post_raw(client, RUN, body)

    assert response.status_code == 422
    assert set(response.json()) >= {"detail", "code"}


def test_a_body_over_the_default_limit_of_one_mebibyte_is_413(client):
    padding = "x" * (1024 * 1024)

    response = post_raw(client, RUN, json.dumps({"payload": {"pad": padding}}))

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Execution.objects.exists()


def test_a_body_just_under_the_limit_is_accepted(client):
    body = json.dumps({"payload": {"pad": ""}})
    padding = "x" * (1024 * 1024 - len(body) - 16)

    response = post_raw(client, RUN, json.dumps({"payload": {"pad": padding}}))

    assert response.status_code == 201


@override_settings(POLOS_MAX_BODY_BYTES=200, DATA_UPLOAD_MAX_MEMORY_SIZE=200)
def test_the_body_limit_is_configurable(client):
    small = post_raw(client, RUN, json.dumps({"payload": {"pad": "x" * 50}}))
    large = post_raw(client, RUN, json.dumps({"payload": {"pad": "x" * 300}}))

    assert small.status_code == 201
    assert large.status_code == 413


@override_settings(POLOS_MAX_BODY_BYTES=200, DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_the_limit_holds_without_djangos_own(client):
    response = post_raw(client, RUN, json.dumps({"payload": {"pad": "x" * 300}}))

    assert response.status_code == 413


@override_settings(POLOS_MAX_BODY_BYTES=200, DATA_UPLOAD_MAX_MEMORY_SIZE=200)
def test_a_large_form_body_is_413_too(client):
    response = client.post(RUN, {"pad": "x" * 300})  # form-encoded: read by the CSRF check

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_an_unexpected_error_is_a_500_in_the_error_shape(client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the database is on fire")

    monkeypatch.setattr(selectors, "execution_list", broken)

    response = client.get("/api/v1/executions")

    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "code": "internal_error"}


def test_every_error_has_the_shape(client):
    answers = [
        client.get("/api/v1/executions/nope"),
        client.get("/api/v1/executions?limit=x"),
        post_raw(client, "/api/v1/workflows/none/run", b'{"payload": {}}'),
        post_raw(client, RUN, b"{"),
        Client().get("/api/v1/workflows"),
    ]

    for response in answers:
        assert response.status_code in (400, 401, 404, 422)
        assert isinstance(response.json()["detail"], str)
        assert isinstance(response.json()["code"], str)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/nothing-here"),
        ("post", "/api/v1/executions//resume"),
        ("get", "/api/v1/workflows/"),
        ("delete", "/api/v1/workflows/x/y/z"),
    ],
)
def test_unknown_api_paths_are_404_in_the_error_shape(method, path):
    response = getattr(Client(), method)(path)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_openapi_document_describes_every_endpoint():
    response = Client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    expected = {
        ("post", "/api/v1/workflows/{workflow_id}/run"),
        ("get", "/api/v1/workflows"),
        ("get", "/api/v1/executions"),
        ("get", "/api/v1/executions/{execution_id}"),
        ("post", "/api/v1/executions/{execution_id}/resume"),
        ("post", "/api/v1/workflows/{workflow_id}/executions/{execution_id}/resume"),
        ("post", "/api/v1/executions/{execution_id}/cancel"),
        ("get", "/api/v1/events"),
        ("post", "/api/v1/events"),
        ("get", "/api/v1/executions/{execution_id}/events/stream"),
        ("get", "/api/v1/events/stream"),
        ("get", "/api/v1/approvals"),
    }
    assert expected <= {(method, path) for path, ops in paths.items() for method in ops}
    schemes = document["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}
    stream = paths["/api/v1/executions/{execution_id}/events/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]


def test_the_interactive_docs_are_served():
    response = Client().get("/api/v1/docs")

    assert response.status_code == 200
    assert b"openapi.json" in response.content
