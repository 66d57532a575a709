"""Authentication of the HTTP API: ``Authorization: Bearer <API key>``, or the console's
session (with its CSRF token on unsafe methods). Both resolve to a user: a key acts as its user.

Use as ``auth=API_AUTH`` on a ninja router or operation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from workflows.models import ApiKey
from workflows.services import api_key_hash

# Recording every use would turn each read into a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(seconds=60)
MAX_KEY_LENGTH = 200


class CsrfFailed(HttpError):
    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__(403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken")


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer <key>``: an active key of an active user."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        token = token.strip()
        if not token or len(token) > MAX_KEY_LENGTH:
            return None
        key = (
            ApiKey.objects.select_related("user")
            .filter(key_hash=api_key_hash(token), is_active=True)
            .first()
        )
        if key is None or not key.user.is_active:
            return None
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request.api_key = key  # type: ignore[attr-defined]
        request.user = key.user
        return key.user


class SessionAuth(APIKeyCookie):
    """The console's login session. CSRF is checked only for a logged-in session: a request
    with neither a session nor a valid key is a 401, not a CSRF failure."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        super().__init__(csrf=True)

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        if (
            self.csrf
            and not getattr(request, "_ninja_csrf_exempt", False)
            and check_csrf(request) is not None
        ):
            raise CsrfFailed()
        return user


API_AUTH = [ApiKeyAuth(), SessionAuth()]
