"""The HTTP API (``/api/v1/``): one NinjaAPI; each app adds its router to it.

Other parts of the project call ``api.add_router(prefix, router)`` here (workflows, approvals).
Every failure answers ``{"detail": "...", "code": "..."}``; the handlers at the bottom map the
services' typed errors to statuses, in this one place.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from workflows import errors
from workflows.api import router as workflows_router
from workflows.services import EventInvalid

logger = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class MalformedJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not JSON")


def _reject_nul(value: Any) -> None:
    """PostgreSQL cannot store U+0000 in text or jsonb: refuse it as bad input, not a 500."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise MalformedJson("strings may not contain U+0000")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class JsonParser(Parser):
    """Strict JSON bodies of at most ``POLOS_MAX_BODY_BYTES`` (ninja answers 400 to what this
    raises; the HttpError handler below tells a too large body (413) apart)."""

    def parse_body(self, request: HttpRequest) -> Any:
        body = request.body  # Django refuses a declared length over DATA_UPLOAD_MAX_MEMORY_SIZE
        if len(body) > settings.POLOS_MAX_BODY_BYTES:
            raise BodyTooLarge()
        data = json.loads(body, parse_constant=_reject_constant)
        _reject_nul(data)
        return data


api = NinjaAPI(
    title="Polos for Django",
    version="1",
    description="Durable workflows with human approvals. Authenticate with "
    "`Authorization: Bearer <API key>` (`manage.py create_api_key`) or the console's session.",
    urls_namespace="api",
    parser=JsonParser(),
)

api.add_router("/", workflows_router)


# -- errors: one shape, one mapping --------------------------------------------------------------

SERVICE_ERROR_STATUS: dict[type[errors.ServiceError], int] = {
    errors.WorkflowNotFound: 404,
    errors.ExecutionNotFound: 404,
    errors.SuspensionNotFound: 404,
    errors.DecisionForbidden: 403,
    errors.WorkflowDisabled: 409,
    errors.IdempotencyConflict: 409,
    errors.ExecutionFinished: 409,
    errors.SuspensionNotPending: 409,
    EventInvalid: 422,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "throttled",
}


def error_response(
    request: HttpRequest, http_status: int, detail: str, code: str, /, **extra: Any
) -> HttpResponse:
    body = {"detail": detail, "code": code, **extra}
    return api.create_response(request, body, status=http_status)


def _too_large(request: HttpRequest) -> HttpResponse:
    limit = settings.POLOS_MAX_BODY_BYTES
    return error_response(
        request, 413, f"the request body exceeds {limit} bytes", "payload_too_large"
    )


@api.exception_handler(errors.ServiceError)
def _service_error(request: HttpRequest, exc: errors.ServiceError) -> HttpResponse:
    status = next(
        (code for kind, code in SERVICE_ERROR_STATUS.items() if isinstance(exc, kind)), 400
    )
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.SuspensionNotPending):
        extra = {
            "status": exc.status,
            "decided_by": exc.decided_by,
            "decided_at": exc.decided_at.isoformat() if exc.decided_at else None,
        }
    return error_response(request, status, str(exc), exc.code, **extra)


@api.exception_handler(errors.PayloadInvalid)
def _payload_invalid(request: HttpRequest, exc: errors.PayloadInvalid) -> HttpResponse:
    fields = [{"field": e["field"], "message": e["message"]} for e in exc.errors]
    return error_response(request, 422, str(exc), "payload_invalid", errors=fields)


@api.exception_handler(errors.DecisionInvalid)
def _decision_invalid(request: HttpRequest, exc: errors.DecisionInvalid) -> HttpResponse:
    fields = [{"field": e["field"], "message": e["message"]} for e in exc.errors]
    return error_response(request, 422, str(exc), "decision_invalid", errors=fields)


def _field(loc: Any) -> str:
    """A field's dotted name from ninja's error location: ``(source, parameter, *path)`` for
    the body (whose parameter name the client never sees), ``(source, name, *path)`` else."""
    parts = [str(part) for part in loc or ()]
    path = parts[2:] if parts[:1] == ["body"] else parts[1:]
    return ".".join(path) or (parts[0] if parts else "request")


@api.exception_handler(ValidationError)
def _request_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields = [{"field": _field(e.get("loc")), "message": str(e.get("msg", ""))} for e in exc.errors]
    return error_response(request, 422, "the request is invalid", "validation_error", errors=fields)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = error_response(
        request,
        401,
        "authentication required: send 'Authorization: Bearer <API key>' or log in",
        "unauthorized",
    )
    response["WWW-Authenticate"] = 'Bearer realm="polos"'
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    cause = exc.__cause__
    if isinstance(cause, BodyTooLarge | RequestDataTooBig):
        return _too_large(request)
    if exc.status_code == 400 and cause is not None:
        return error_response(request, 400, "the request body is not valid JSON", "malformed_json")
    code = getattr(exc, "code", None) or HTTP_CODES.get(exc.status_code, "error")
    return error_response(request, exc.status_code, str(exc), code)


@api.exception_handler(RequestDataTooBig)
def _request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _too_large(request)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "not found", "not_found")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(request, 500, "internal error", "internal_error")


# -- keep last: any other path under /api/v1/ is a 404 in the error shape -------------------------

_unknown_paths = Router()


@_unknown_paths.api_operation(
    ["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", include_in_schema=False
)
def _unknown_path(request: HttpRequest, rest: str) -> HttpResponse:
    return error_response(request, 404, f"no API endpoint at /{rest}", "not_found")


api.add_router("/", _unknown_paths)
