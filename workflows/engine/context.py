"""The workflow context: ``ctx.step.run / suspend / uuid / now / random / wait_for / wait_until``.

Every step is memoised under its key: the first run records it, every replay returns the
record. Finished steps are buffered and written with the next transition (the next step's
start, a suspend, the end), so a plain cycle costs one transaction per transition.
"""

from __future__ import annotations

import inspect
import random as _random
import time
import traceback
import typing
import uuid as _uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from .decisions import form_of
from .exceptions import (
    DuplicateStepKey,
    InvalidStepKey,
    NonDeterministicReplay,
    OutputNotSerializable,
    StepExecutionError,
    Suspended,
    SuspendTimeout,
)
from .serialization import to_json_value
from .store import StepKind, StepRecord, Store, SuspendRequest

MAX_STEP_KEY_LENGTH = 200
_MISSING: Any = object()


def utcnow() -> datetime:
    return datetime.now(UTC)


def error_info(exc: BaseException) -> dict[str, Any]:
    """How an exception is stored: type, message, traceback."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _result_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    try:
        annotation = typing.get_type_hints(fn).get("return")
    except Exception:
        return None
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _seconds(timeout: float | int | timedelta | None, *, what: str) -> float | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if seconds <= 0:
        raise ValueError(f"{what} must be positive, got {timeout!r}")
    return seconds


class StepRunner:
    """``ctx.step``. One instance per run of a workflow function."""

    #: First retry waits this long; each next one twice as long, capped at ``retry_max_delay``.
    retry_base_delay = 0.2
    retry_max_delay = 10.0

    def __init__(
        self,
        *,
        execution_id: UUID,
        workflow_id: str,
        recorded: dict[str, StepRecord],
        store: Store,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._execution_id = execution_id
        self._workflow_id = workflow_id
        self._recorded = recorded
        self._store = store
        self._sleep = sleep
        self._used: set[str] = set()
        self._pending: list[StepRecord] = []

    # -- the public steps -------------------------------------------------------------------

    def run(
        self, step_key: str, fn: Callable[..., Any], *args: Any, max_retries: int = 2, **kwargs: Any
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once per execution and return its (JSON) output.

        A pydantic model returned by ``fn`` (per its return annotation) comes back as that
        model on the first run and on every replay alike.
        """
        record = self._replayed(step_key, "run")
        model = _result_model(fn)
        if record is None:
            # Earlier steps must be durable before this one's side effects begin.
            self._flush()
            record = self._execute(step_key, fn, args, kwargs, max_retries)
            self._pending.append(record)
        if record.status == "failed":
            error = record.error or {}
            raise StepExecutionError(
                f"step {step_key!r} failed: "
                f"{error.get('type', 'Error')}: {error.get('message', '')}",
                step_key=step_key,
                error_type=str(error.get("type", "")),
                details=error,
            )
        if model is not None and record.output is not None:
            return model.model_validate(record.output)
        return record.output

    def suspend(
        self,
        step_key: str,
        data: dict[str, Any] | BaseModel | None = None,
        timeout: float | int | timedelta | None = None,
        *,
        default: Any = _MISSING,
        schema: type[BaseModel] | None = None,
    ) -> dict[str, Any]:
        """Park the execution until a decision (or the timeout) arrives; return the resume event.

        The first time, this registers the suspension and stops the workflow function (the
        worker is freed). On the replay after a decision it returns the resume event
        (``event_type``, ``topic``, ``data``, ``sequence_id``, ``created_at``, ``decided_by``).
        After a timeout it raises ``SuspendTimeout``, or returns a ``"timeout"`` event whose
        ``data`` is ``default`` when one was given.
        """
        record = self._replayed(step_key, "suspend")
        if record is None:
            seconds = _seconds(timeout, what="timeout")
            payload = to_json_value(data or {}, what=f"suspend data of {step_key!r}")
            if not isinstance(payload, dict):
                raise TypeError(f"suspend data of {step_key!r} must be a dict or a pydantic model")
            decision_schema = None
            schema_ref = ""
            if schema is not None:
                decision_schema = schema.model_json_schema()
                schema_ref = f"{schema.__module__}:{schema.__qualname__}"
            else:
                form_of(payload)  # refuse a malformed _form now, not when someone decides
            now = utcnow()
            request = SuspendRequest(
                step_key=step_key,
                kind="approval",
                data=payload,
                expires_at=now + timedelta(seconds=seconds) if seconds else None,
                has_default=default is not _MISSING,
                default=None
                if default is _MISSING
                else to_json_value(default, what=f"default of {step_key!r}"),
                decision_schema=decision_schema,
                schema_ref=schema_ref,
                created_at=now,
            )
            record = self._park(request)
        return self._resume_value(step_key, record)

    def wait_for(self, step_key: str, seconds: float | int | timedelta) -> None:
        """Durable sleep: park the execution (no worker held) and wake it after ``seconds``."""
        delay = _seconds(seconds, what="seconds")
        assert delay is not None
        self.wait_until(step_key, utcnow() + timedelta(seconds=delay))

    def wait_until(self, step_key: str, when: datetime) -> None:
        """Durable sleep until ``when`` (timezone-aware); returns at once when it has passed."""
        if when.tzinfo is None:
            raise ValueError("wait_until needs a timezone-aware datetime")
        record = self._replayed(step_key, "sleep")
        if record is None:
            now = utcnow()
            if when <= now:
                self._pending.append(
                    StepRecord(
                        step_key,
                        "sleep",
                        "completed",
                        {"woke_at": now.isoformat()},
                        started_at=now,
                        finished_at=now,
                    )
                )
                return
            self._park(
                SuspendRequest(
                    step_key=step_key,
                    kind="sleep",
                    data={},
                    expires_at=when,
                    has_default=True,
                    default={},
                    created_at=now,
                )
            )

    def uuid(self, step_key: str) -> UUID:
        return UUID(self._memo(step_key, "uuid", lambda: str(_uuid.uuid4())))

    def now(self, step_key: str) -> datetime:
        return datetime.fromisoformat(self._memo(step_key, "now", lambda: utcnow().isoformat()))

    def random(self, step_key: str) -> float:
        return float(self._memo(step_key, "random", _random.random))

    # -- internals ----------------------------------------------------------------------------

    def _claim(self, step_key: str) -> None:
        if not isinstance(step_key, str) or not step_key.strip():
            raise InvalidStepKey(f"step key must be a non-empty string, got {step_key!r}")
        if "/" in step_key:
            raise InvalidStepKey(
                f"step key {step_key!r} must not contain '/' (it separates topic parts)"
            )
        if len(step_key) > MAX_STEP_KEY_LENGTH:
            raise InvalidStepKey(f"step key is longer than {MAX_STEP_KEY_LENGTH} characters")
        if step_key in self._used:
            raise DuplicateStepKey(
                f"step key {step_key!r} is used twice in workflow {self._workflow_id!r}; "
                "each step needs its own key (add an index for loops, e.g. 'charge-3')"
            )
        self._used.add(step_key)

    def _replayed(self, step_key: str, kind: StepKind) -> StepRecord | None:
        self._claim(step_key)
        record = self._recorded.get(step_key)
        if record is not None and record.kind != kind:
            raise NonDeterministicReplay(
                f"step {step_key!r} was recorded as {record.kind!r} but is now a {kind!r} step; "
                "the workflow code changed under a running execution"
            )
        return record

    def _memo(self, step_key: str, kind: StepKind, make: Callable[[], Any]) -> Any:
        record = self._replayed(step_key, kind)
        if record is None:
            now = utcnow()
            record = StepRecord(
                step_key, kind, "completed", make(), started_at=now, finished_at=now
            )
            self._pending.append(record)
        return record.output

    def _execute(
        self,
        step_key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        max_retries: int,
    ) -> StepRecord:
        started = utcnow()
        attempt = 0

        def failed(exc: Exception) -> StepRecord:
            error = error_info(exc) | {"attempts": attempt + 1}
            return StepRecord(
                step_key, "run", "failed", None, error, started_at=started, finished_at=utcnow()
            )

        while True:
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                if attempt < max_retries:
                    self._sleep(min(self.retry_base_delay * 2**attempt, self.retry_max_delay))
                    attempt += 1
                    continue
                return failed(exc)
            try:
                output = to_json_value(value, what=f"output of step {step_key!r}")
            except OutputNotSerializable as exc:
                # Not retried: fn succeeded (its side effects happened) and would only return
                # the same unstorable value again.
                return failed(exc)
            return StepRecord(
                step_key, "run", "completed", output, started_at=started, finished_at=utcnow()
            )

    def _park(self, request: SuspendRequest) -> StepRecord:
        record = self._store.suspend(self._execution_id, self.take_pending(), request)
        if record is None:
            raise Suspended(request.step_key)
        return record

    def _resume_value(self, step_key: str, record: StepRecord) -> dict[str, Any]:
        if record.status == "failed":
            error = record.error or {}
            raise SuspendTimeout(
                str(error.get("message") or f"suspension {step_key!r} timed out"),
                step_key=step_key,
                expires_at=error.get("expires_at"),
            )
        return dict(record.output or {})

    def _flush(self) -> None:
        if self._pending:
            self._store.flush(self._execution_id, self.take_pending())

    def take_pending(self) -> list[StepRecord]:
        """The finished steps not yet persisted; the caller writes them."""
        pending, self._pending = self._pending, []
        return pending


class WorkflowContext:
    """What a workflow function receives as ``ctx``."""

    def __init__(
        self,
        *,
        execution_id: UUID,
        workflow_id: str,
        recorded: dict[str, StepRecord],
        store: Store,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.step = StepRunner(
            execution_id=execution_id,
            workflow_id=workflow_id,
            recorded=recorded,
            store=store,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"<WorkflowContext {self.workflow_id} {self.execution_id}>"
