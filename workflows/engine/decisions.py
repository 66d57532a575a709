"""Decision schemas: the Polos ``_form`` convention, a pydantic model, or plain approve/reject.

``validate_decision`` is called by the one decision service before anything is consumed, so
the approval page, the API and topic events refuse the same bad input the same way.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .exceptions import WorkflowError
from .registry import validation_errors

FIELD_TYPES = ("text", "textarea", "number", "boolean", "select")
_TRUE = {"true", "on", "1", "yes"}
_FALSE = {"false", "off", "0", "no", ""}


class DecisionInvalid(WorkflowError, ValueError):
    """The decision does not fit the step's schema. ``errors``: ``[{"field", "message"}]``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        super().__init__(f"invalid decision: {summary}")
        self.errors = errors


@dataclass(frozen=True)
class FormField:
    name: str
    type: str = "text"
    label: str = ""
    description: str = ""
    required: bool = False
    default: Any = None
    options: list[dict[str, str]] = field(default_factory=list)

    @property
    def option_values(self) -> list[str]:
        return [option["value"] for option in self.options]


@dataclass(frozen=True)
class Form:
    title: str
    description: str
    fields: list[FormField]


def _option(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict) and "value" in raw:
        return {"value": str(raw["value"]), "label": str(raw.get("label", raw["value"]))}
    return {"value": str(raw), "label": str(raw)}


def form_of(data: dict[str, Any]) -> Form | None:
    """The ``_form`` of suspend data, parsed; None when absent. Malformed: WorkflowError."""
    raw = data.get("_form") if isinstance(data, dict) else None
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("fields", []), list):
        raise WorkflowError("_form must be an object with a list of fields")
    fields = []
    for index, item in enumerate(raw.get("fields", [])):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise WorkflowError(f"_form field #{index} needs a name")
        kind = item.get("type", "text")
        if kind not in FIELD_TYPES:
            raise WorkflowError(f"_form field {item['name']!r} has unknown type {kind!r}")
        raw_options = item.get("options") or []
        if not isinstance(raw_options, list):
            raise WorkflowError(f"_form field {item['name']!r} options must be a list")
        options = [_option(option) for option in raw_options]
        if kind == "select" and not options:
            raise WorkflowError(f"_form select field {item['name']!r} needs options")
        fields.append(
            FormField(
                name=item["name"],
                type=kind,
                label=str(item.get("label") or item["name"].replace("_", " ").capitalize()),
                description=str(item.get("description") or ""),
                required=bool(item.get("required", False)),
                default=item.get("default"),
                options=options,
            )
        )
    return Form(str(raw.get("title") or ""), str(raw.get("description") or ""), fields)


def _clean_field(spec: FormField, value: Any) -> Any:
    """The field's value converted to its type; ValueError with a message when it is wrong."""
    if spec.type in ("text", "textarea"):
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("Enter text.")
        return str(value)
    if spec.type == "number":
        if isinstance(value, bool):
            raise ValueError("Enter a number.")
        if isinstance(value, int):
            return value
        try:
            number = value if isinstance(value, float) else float(str(value).strip())
        except ValueError:
            raise ValueError("Enter a number.") from None
        if not math.isfinite(number):  # "nan", "inf": not storable as JSON
            raise ValueError("Enter a number.")
        if isinstance(value, float):
            return value
        return int(number) if number.is_integer() and "." not in str(value) else number
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in _TRUE:
            return True
        if str(value).strip().lower() in _FALSE:
            return False
        raise ValueError("Choose yes or no.")
    # select
    if str(value) not in spec.option_values:
        raise ValueError(f"Choose one of: {', '.join(spec.option_values)}.")
    return str(value)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def validate_form(form: Form, decision: dict[str, Any]) -> dict[str, Any]:
    cleaned = dict(decision)
    errors: list[dict[str, Any]] = []
    for spec in form.fields:
        value = decision.get(spec.name)
        if _blank(value):
            if spec.type == "boolean" and not spec.required:
                cleaned[spec.name] = bool(spec.default) if spec.default is not None else False
                continue
            if spec.required:
                errors.append({"field": spec.name, "message": "This field is required."})
            else:
                cleaned[spec.name] = spec.default
            continue
        try:
            cleaned[spec.name] = _clean_field(spec, value)
        except ValueError as exc:
            errors.append({"field": spec.name, "message": str(exc)})
    if errors:
        raise DecisionInvalid(errors)
    return cleaned


def import_schema(schema_ref: str) -> type[BaseModel]:
    module_name, _, qualname = schema_ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise WorkflowError(f"decision schema {schema_ref!r} is not a pydantic model")
    return target


def validate_decision(
    *, suspend_data: dict[str, Any], schema_ref: str, decision: Any
) -> dict[str, Any]:
    """The decision, cleaned, or DecisionInvalid. The pydantic schema wins over ``_form``."""
    if not isinstance(decision, dict):
        raise DecisionInvalid([{"field": "data", "message": "The decision must be a JSON object."}])
    if schema_ref:
        model = import_schema(schema_ref)
        try:
            return model.model_validate(decision).model_dump(mode="json")
        except ValidationError as exc:
            raise DecisionInvalid(
                [{"field": e["field"], "message": e["message"]} for e in validation_errors(exc)]
            ) from None
    form = form_of(suspend_data)
    if form is not None:
        return validate_form(form, decision)
    errors = []
    if "approved" in decision and not isinstance(decision["approved"], bool):
        errors.append({"field": "approved", "message": "Must be true or false."})
    if "comment" in decision and not isinstance(decision["comment"], str | type(None)):
        errors.append({"field": "comment", "message": "Must be text."})
    if errors:
        raise DecisionInvalid(errors)
    return decision
