"""The registry of workflows, filled by the ``@workflow`` decorator at import time."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .exceptions import PayloadInvalid, WorkflowError, WorkflowNotRegistered

WorkflowFn = Callable[..., Any]


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"field", "message", "type"}]``, the shape our API returns."""
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "__root__",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False)
    ]


@dataclass(frozen=True)
class WorkflowSpec:
    id: str
    fn: WorkflowFn
    description: str = ""
    version: str = "1"
    payload_model: type[BaseModel] | None = None
    result_model: type[BaseModel] | None = field(default=None, compare=False)

    def validate_payload(self, payload: Any) -> dict[str, Any]:
        """The payload as stored (a JSON object); raises PayloadInvalid with field errors."""
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        if self.payload_model is not None:
            try:
                return self.payload_model.model_validate(payload).model_dump(mode="json")
            except ValidationError as exc:
                raise PayloadInvalid(self.id, validation_errors(exc)) from None
        if payload is None:
            return {}
        if not isinstance(payload, dict):
            raise PayloadInvalid(
                self.id,
                [{"field": "payload", "message": "must be a JSON object", "type": "dict_type"}],
            )
        return payload

    def load_payload(self, stored: dict[str, Any]) -> Any:
        """What the workflow function receives: the pydantic model, or the dict."""
        if self.payload_model is not None:
            return self.payload_model.model_validate(stored)
        return stored

    @property
    def payload_schema(self) -> dict[str, Any] | None:
        return self.payload_model.model_json_schema() if self.payload_model else None


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, WorkflowSpec] = {}

    def register(self, spec: WorkflowSpec) -> None:
        existing = self._specs.get(spec.id)
        # Re-importing the same module (autoreload, tests) re-registers the same function.
        if existing is not None and existing.fn.__qualname__ != spec.fn.__qualname__:
            raise WorkflowError(
                f"workflow id {spec.id!r} is already registered by "
                f"{existing.fn.__module__}.{existing.fn.__qualname__}"
            )
        self._specs[spec.id] = spec

    def get(self, workflow_id: str) -> WorkflowSpec:
        try:
            return self._specs[workflow_id]
        except KeyError:
            raise WorkflowNotRegistered(workflow_id) from None

    def all(self) -> list[WorkflowSpec]:
        return sorted(self._specs.values(), key=lambda spec: spec.id)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._specs


registry = Registry()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def workflow(
    id: str | None = None,
    *,
    description: str = "",
    version: str = "1",
) -> Callable[[WorkflowFn], WorkflowFn]:
    """Register ``fn(ctx, payload)`` as a workflow. The payload's annotation, when it is a
    pydantic model, validates the start payload."""

    def decorate(fn: WorkflowFn) -> WorkflowFn:
        workflow_id = id or fn.__name__.replace("_", "-")
        if not workflow_id or "/" in workflow_id:
            raise WorkflowError(f"invalid workflow id {workflow_id!r}: non-empty, without '/'")
        params = list(inspect.signature(fn).parameters)
        if len(params) != 2:
            raise WorkflowError(
                f"workflow {workflow_id!r} must take exactly (ctx, payload), got {params}"
            )
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        spec = WorkflowSpec(
            id=workflow_id,
            fn=fn,
            description=description or (inspect.getdoc(fn) or "").split("\n\n")[0],
            version=str(version),
            payload_model=_model_of(hints.get(params[1])),
            result_model=_model_of(hints.get("return")),
        )
        registry.register(spec)
        fn.workflow_id = workflow_id  # type: ignore[attr-defined]
        return fn

    return decorate
