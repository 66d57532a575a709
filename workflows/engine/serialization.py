"""JSON conversion of step outputs and results (pydantic models included)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from .exceptions import OutputNotSerializable


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json_value(value: Any, *, what: str) -> Any:
    """The JSON form of ``value`` (what replay will return), or a clear error naming ``what``."""
    try:
        return json.loads(json.dumps(value, default=_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise OutputNotSerializable(f"{what} cannot be stored as JSON: {exc}") from None
