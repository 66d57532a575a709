"""The decision form of an approval: fields from the step's schema, values from a POST.

Three sources, as the engine knows them (``workflows.engine.decisions``): a pydantic model's
JSON schema (``Suspension.decision_schema``), the Polos ``_form`` in the suspend data, or
neither (Approve / Reject with a comment). The form only renders and collects; validation is
the decision service's, so the page refuses exactly what the API refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

from approvals.templatetags.console import humanize_key
from workflows.engine.decisions import form_of
from workflows.models import Suspension

KIND_FORM = "form"
KIND_SCHEMA = "schema"
KIND_APPROVE_REJECT = "approve_reject"

# The Approve / Reject buttons' field; "approve" and "reject" are its values.
VERDICT = "verdict"
COMMENT = "comment"
_MULTILINE_NAMES = {"comment", "comments", "reason", "note", "notes", "justification"}


@dataclass
class DecisionField:
    name: str
    widget: str  # text, textarea, number, checkbox, yesno, select
    label: str
    help: str = ""
    required: bool = False
    value: Any = None  # as rendered: text, or a bool for checkboxes, or None
    options: list[tuple[str, str]] = field(default_factory=list)
    integer: bool = False
    error: str = ""

    @property
    def id(self) -> str:
        return "field-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.name)

    @property
    def input_value(self) -> str:
        if self.value is None or isinstance(self.value, bool):
            return ""
        if isinstance(self.value, float) and self.value.is_integer():
            return str(int(self.value))
        return str(self.value)

    @property
    def checked(self) -> bool:
        return self.value is True

    @property
    def yes_checked(self) -> bool:
        return self.value is True

    @property
    def no_checked(self) -> bool:
        return self.value is False


@dataclass
class DecisionForm:
    kind: str
    title: str = ""
    description: str = ""
    fields: list[DecisionField] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(f.error for f in self.fields)

    @property
    def error_count(self) -> int:
        return len(self.errors) + sum(1 for f in self.fields if f.error)

    def field(self, name: str) -> DecisionField | None:
        return next((f for f in self.fields if f.name == name), None)

    def add_errors(self, errors: list[dict[str, Any]]) -> None:
        """Put the service's ``[{"field", "message"}]`` beside their fields."""
        for error in errors:
            name = str(error.get("field", ""))
            target = self.field(name) or self.field(name.split(".")[0])
            message = str(error.get("message", "Invalid value."))
            if target is not None and not target.error:
                target.error = message
            elif target is None:
                prefix = "" if name in ("", "__root__", "data") else f"{humanize_key(name)}: "
                self.errors.append(prefix + message)


# -- building the form ------------------------------------------------------------------------


def _from_polos_form(data: dict[str, Any]) -> DecisionForm:
    spec = form_of(data)
    assert spec is not None
    fields = []
    for item in spec.fields:
        widget = {"boolean": "checkbox"}.get(item.type, item.type)
        if item.type == "boolean" and item.required:
            # A required checkbox could only ever be "yes": ask yes or no instead.
            widget = "yesno"
        fields.append(
            DecisionField(
                name=item.name,
                widget=widget,
                label=item.label,
                help=item.description,
                required=item.required,
                value=item.default,
                options=[(o["value"], o["label"]) for o in item.options],
            )
        )
    return DecisionForm(KIND_FORM, spec.title, spec.description, fields)


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """A property with ``$ref`` and ``Optional[...]`` (``anyOf`` with null) unwrapped."""
    if "anyOf" in prop:
        options = [p for p in prop["anyOf"] if p.get("type") != "null"]
        if len(options) == 1:
            prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **options[0]}
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
        prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def _from_json_schema(schema: dict[str, Any]) -> DecisionForm:
    required = set(schema.get("required", []))
    fields = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _resolve(schema, raw)
        kind = prop.get("type")
        is_required = name in required
        entry = DecisionField(
            name=name,
            widget="text",
            label=str(prop.get("title") or humanize_key(name)),
            help=str(prop.get("description") or ""),
            required=is_required,
            value=prop.get("default"),
        )
        if "enum" in prop:
            entry.widget = "select"
            entry.options = [(str(v), humanize_key(v)) for v in prop["enum"]]
        elif kind == "boolean":
            entry.widget = "yesno" if is_required and "default" not in prop else "checkbox"
        elif kind in ("number", "integer"):
            entry.widget = "number"
            entry.integer = kind == "integer"
        elif kind == "string" and (
            prop.get("format") == "textarea"
            or name.lower() in _MULTILINE_NAMES
            or (prop.get("maxLength") or 0) > 200
        ):
            entry.widget = "textarea"
        fields.append(entry)
    return DecisionForm(
        KIND_SCHEMA, str(schema.get("title") or ""), str(schema.get("description") or ""), fields
    )


def decision_form(suspension: Suspension) -> DecisionForm:
    """The empty (default-filled) decision form of ``suspension``."""
    if suspension.decision_schema:
        return _from_json_schema(suspension.decision_schema)
    if isinstance(suspension.data, dict) and suspension.data.get("_form") is not None:
        return _from_polos_form(suspension.data)
    return DecisionForm(
        KIND_APPROVE_REJECT,
        fields=[
            DecisionField(
                name=COMMENT,
                widget="textarea",
                label="Comment",
                help="Optional. Recorded with your decision and shown in the history.",
                value="",
            )
        ],
    )


# -- reading a POST ---------------------------------------------------------------------------


def _number(text: str, integer: bool) -> Any:
    """The number typed, or the text itself so the schema reports it."""
    cleaned = text.strip().replace(",", "") if re.fullmatch(r"[\d,.\s+-]+", text) else text
    try:
        return int(cleaned) if integer or re.fullmatch(r"[+-]?\d+", cleaned) else float(cleaned)
    except ValueError:
        return text


def decision_data(form: DecisionForm, post: QueryDict) -> dict[str, Any]:
    """The decision as the service takes it, from the POST; also refills ``form``'s values
    so a refused form shows what was typed."""
    data: dict[str, Any] = {}
    for entry in form.fields:
        if entry.widget == "checkbox":
            entry.value = post.get(entry.name) is not None
            data[entry.name] = entry.value
            continue
        raw = post.get(entry.name)
        if entry.widget == "yesno":
            entry.value = {"true": True, "false": False}.get(raw or "")
            if entry.value is not None:
                data[entry.name] = entry.value
            continue
        entry.value = raw or ""
        if raw is None or raw.strip() == "":
            if form.kind == KIND_FORM:
                data[entry.name] = ""  # the form's own rules: its default, or "required"
            continue  # a schema's default applies, or it reports the field as missing
        if form.kind == KIND_SCHEMA and entry.widget == "number":
            data[entry.name] = _number(raw, entry.integer)
        else:
            data[entry.name] = raw
    if form.kind == KIND_APPROVE_REJECT:
        verdict = post.get(VERDICT)
        if verdict in ("approve", "reject"):
            data["approved"] = verdict == "approve"
        data.setdefault(COMMENT, "")
    return data


def verdict_missing(form: DecisionForm, data: dict[str, Any]) -> bool:
    return form.kind == KIND_APPROVE_REJECT and "approved" not in data
