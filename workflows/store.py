"""The engine's Store on the ORM: each method is one short transaction.

On PostgreSQL each transition is one SQL statement (data-modifying CTEs): outside a
transaction, a statement is a transaction of its own, so a transition costs one round trip and
one commit instead of a BEGIN, five or six ORM statements and a COMMIT. Other databases take
the ORM path; both write the same rows.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from workflows import events as ev
from workflows.engine.exceptions import ExecutionCancelled
from workflows.engine.store import StepRecord, SuspendRequest
from workflows.models import Event, Execution, StepOutput, Suspension, WorkflowDefinition


def approval_url(execution_id: UUID | str) -> str:
    return f"{settings.POLOS_BASE_URL}/approve/{execution_id}/"


def step_record(row: StepOutput) -> StepRecord:
    return StepRecord(
        step_key=row.step_key,
        kind=row.kind,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        output=row.output,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def steps_load(execution_id: UUID) -> dict[str, StepRecord]:
    """Every recorded step of an execution, in one query whatever their number."""
    rows = StepOutput.objects.filter(execution_id=execution_id).only(
        "step_key", "kind", "status", "output", "error", "started_at", "finished_at"
    )
    return {row.step_key: step_record(row) for row in rows}


# -- PostgreSQL: one statement per transition -----------------------------------------------


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def pg_execute(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement and return its first row. Outside a transaction the statement commits
    by itself; inside one it runs in a savepoint, as ``transaction.atomic()`` would, so a
    failure leaves the caller's transaction usable."""
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def pg_insert_values(instance: models.Model, prefix: str) -> tuple[str, str, dict[str, Any]]:
    """``(columns, placeholders, params)`` inserting ``instance`` (its serial key left to the
    database), for ``INSERT INTO t (columns) SELECT placeholders ...``."""
    columns, placeholders, params = [], [], {}
    for field in instance._meta.concrete_fields:
        if isinstance(field, models.AutoField | models.BigAutoField):
            continue
        name = f"{prefix}{field.attname}"
        columns.append(connection.ops.quote_name(str(field.column)))
        placeholders.append(f"%({name})s")
        params[name] = field.get_db_prep_save(getattr(instance, field.attname), connection)
    return ", ".join(columns), ", ".join(placeholders), params


def pg_model_from_row(model: type[models.Model], values: tuple[Any, ...]) -> Any:
    """An instance of ``model`` from a row of its concrete fields' columns, in field order,
    converted as the ORM converts them."""
    fields = model._meta.concrete_fields
    converted = []
    for field, value in zip(fields, values, strict=True):
        column = field.get_col(model._meta.db_table)
        for converter in connection.ops.get_db_converters(column) + field.get_db_converters(
            connection
        ):
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def pg_columns(model: type[models.Model], alias: str) -> str:
    """``alias.column, ...`` of the model's concrete fields, in field order."""
    return ", ".join(
        f"{alias}.{connection.ops.quote_name(str(field.column))}"
        for field in model._meta.concrete_fields
    )


def pg_select_one(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _json(value: Any) -> str:
    return json.dumps(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _steps_json(steps: list[StepRecord]) -> str:
    return _json(
        [
            {
                "step_key": step.step_key,
                "kind": step.kind,
                "status": step.status,
                "output": step.output,
                "error": step.error,
                "started_at": _iso(step.started_at),
                "finished_at": _iso(step.finished_at),
            }
            for step in steps
        ]
    )


def _events_json(events: list[Event]) -> str:
    return _json(
        [
            {
                "topic": event.topic,
                "event_type": event.event_type,
                "step_key": event.step_key,
                "data": event.data,
                "created_at": _iso(event.created_at),
            }
            for event in events
        ]
    )


def _pg_transition_sql(
    changes: dict[str, Any], *, steps: bool, events: bool, suspension: tuple[str, str] | None
) -> tuple[str, dict[str, Any]]:
    """The statement of a transition: move the running execution (``changes``), then (only if
    it moved) insert the steps, the suspension and the events, returning how many moved, the
    suspension's id and the events' sequence ids in order."""
    execution = Execution._meta.db_table
    sets, params = [], {}
    for name, value in changes.items():
        field = Execution._meta.get_field(name)
        key = f"set_{name}"
        sets.append(f"{connection.ops.quote_name(str(field.column))} = %({key})s")  # type: ignore[union-attr]
        params[key] = field.get_db_prep_save(value, connection)  # type: ignore[union-attr]
    ctes = [
        f"moved AS (UPDATE {execution} SET {', '.join(sets)} "  # noqa: S608 - names from the models, values as parameters
        "WHERE id = %(execution_id)s AND status = 'running' RETURNING id)"
    ]
    if steps:
        ctes.append(
            f"new_steps AS (INSERT INTO {StepOutput._meta.db_table} "  # noqa: S608 - names from the models, values as parameters
            "(execution_id, step_key, kind, status, output, error, started_at, finished_at) "
            "SELECT moved.id, s->>'step_key', s->>'kind', s->>'status', "
            "NULLIF(s->'output', 'null'::jsonb), NULLIF(s->'error', 'null'::jsonb), "
            "(s->>'started_at')::timestamptz, (s->>'finished_at')::timestamptz "
            "FROM moved, jsonb_array_elements(%(steps)s::jsonb) AS s)"
        )
    suspension_id = "NULL"
    if suspension is not None:
        columns, placeholders = suspension
        ctes.append(
            f"new_suspension AS (INSERT INTO {Suspension._meta.db_table} ({columns}) "  # noqa: S608 - names from the models, values as parameters
            f"SELECT {placeholders} FROM moved RETURNING id)"
        )
        suspension_id = "(SELECT id FROM new_suspension)"
    sequence_ids = "NULL"
    if events:
        ctes.append(
            f"new_events AS (INSERT INTO {Event._meta.db_table} "  # noqa: S608 - names from the models, values as parameters
            "(topic, event_type, execution_id, workflow_id, step_key, data, created_at) "
            "SELECT e->>'topic', e->>'event_type', moved.id, %(workflow_id)s, e->>'step_key', "
            "e->'data', (e->>'created_at')::timestamptz "
            "FROM moved, jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS x(e, n) "
            "ORDER BY x.n RETURNING sequence_id)"
        )
        sequence_ids = "(SELECT array_agg(sequence_id ORDER BY sequence_id) FROM new_events)"
    sql = (
        f"WITH {', '.join(ctes)} "  # noqa: S608 - names from the models, values as parameters
        f"SELECT (SELECT count(*) FROM moved), {suspension_id}, {sequence_ids}"
    )
    return sql, params


class DjangoStore:
    def __init__(self, *, execution_id: UUID, workflow_id: str) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id

    # Each transition first moves the execution out of (or keeps it in) RUNNING with a
    # conditional UPDATE: zero rows means it was cancelled meanwhile, and nothing is written.
    def _transition(self, **changes: Any) -> None:
        updated = Execution.objects.filter(
            pk=self.execution_id, status=Execution.Status.RUNNING
        ).update(**changes)
        if not updated:
            raise ExecutionCancelled()

    def _step_events(self, steps: list[StepRecord]) -> list[Event]:
        topic = ev.lifecycle_topic(self.workflow_id, self.execution_id)
        events = []
        for step in steps:
            if step.kind != "run":
                continue  # uuid/now/random are bookkeeping, not progress worth an event
            data: dict[str, Any] = {"status": step.status}
            if step.error:
                data["error"] = {
                    "type": step.error.get("type"),
                    "message": step.error.get("message"),
                }
            events.append(self._event(topic, ev.STEP_FINISH, data, step_key=step.step_key))
        return events

    def _event(self, topic: str, event_type: str, data: Any, *, step_key: str = "") -> Event:
        return Event(
            topic=topic,
            event_type=event_type,
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            step_key=step_key,
            data=data,
            created_at=timezone.now(),
        )

    def _write(
        self,
        changes: dict[str, Any],
        steps: list[StepRecord],
        events: list[Event],
        suspension: Suspension | None = None,
    ) -> None:
        """One transition, one transaction: move the running execution (``changes``), record
        the finished ``steps``, the new ``suspension`` and ``events``; push the events once
        committed. ExecutionCancelled, nothing written, if it is no longer running."""
        changes.setdefault("updated_at", timezone.now())
        if is_postgresql():
            self._write_pg(changes, steps, events, suspension)
            return
        with transaction.atomic():
            self._transition(**changes)
            if steps:
                StepOutput.objects.bulk_create(
                    StepOutput(
                        execution_id=self.execution_id,
                        step_key=step.step_key,
                        kind=step.kind,
                        status=step.status,
                        output=step.output,
                        error=step.error,
                        started_at=step.started_at,
                        finished_at=step.finished_at,
                    )
                    for step in steps
                )
            if suspension is not None:
                suspension.save(force_insert=True)
            if events:
                ev.events_append(events)

    def _write_pg(
        self,
        changes: dict[str, Any],
        steps: list[StepRecord],
        events: list[Event],
        suspension: Suspension | None,
    ) -> None:
        inserted = pg_insert_values(suspension, "s_") if suspension is not None else None
        sql, params = _pg_transition_sql(
            changes,
            steps=bool(steps),
            events=bool(events),
            suspension=inserted[:2] if inserted is not None else None,
        )
        params.update(execution_id=self.execution_id, workflow_id=self.workflow_id)
        if steps:
            params["steps"] = _steps_json(steps)
        if events:
            params["events"] = _events_json(events)
        if inserted is not None:
            params.update(inserted[2])
        row = pg_execute(sql, params)
        assert row is not None
        moved, suspension_id, sequence_ids = row
        if not moved:
            raise ExecutionCancelled()
        if suspension is not None:
            suspension.pk = suspension_id
            suspension._state.adding = False
            suspension._state.db = connection.alias
        for event, sequence_id in zip(events, sequence_ids or [], strict=True):
            event.sequence_id = sequence_id
            event._state.adding = False
            event._state.db = connection.alias
        if events:
            payload = [event.as_dict() for event in events]
            transaction.on_commit(lambda: ev.events_push(payload))

    def flush(self, execution_id: UUID, steps: list[StepRecord]) -> None:
        self._write({}, steps, self._step_events(steps))

    def suspend(
        self, execution_id: UUID, steps: list[StepRecord], request: SuspendRequest
    ) -> StepRecord | None:
        from approvals.notifications import notifications_schedule
        from workflows.timers import suspension_timer_schedule

        now = timezone.now()
        expires_at = request.expires_at
        if expires_at is None and request.kind == Suspension.Kind.APPROVAL:
            default_timeout = self._default_timeout()
            if default_timeout:
                expires_at = now + timedelta(seconds=default_timeout)
        suspension = Suspension(
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            step_key=request.step_key,
            kind=request.kind,
            data=request.data,
            decision_schema=request.decision_schema,
            schema_ref=request.schema_ref,
            has_default=request.has_default,
            default=request.default,
            expires_at=expires_at,
            created_at=now,
        )
        events = self._step_events(steps)
        if request.kind == Suspension.Kind.APPROVAL:
            events.append(
                self._event(
                    ev.step_topic(request.step_key, self.execution_id),
                    ev.SUSPEND,
                    {
                        "workflow_id": self.workflow_id,
                        "execution_id": str(self.execution_id),
                        "step_key": request.step_key,
                        "data": request.data,
                        "expires_at": expires_at.isoformat() if expires_at else None,
                        "approval_url": approval_url(self.execution_id),
                    },
                    step_key=request.step_key,
                )
            )
        self._write(
            {"status": Execution.Status.WAITING, "updated_at": now}, steps, events, suspension
        )
        # Both act once the transaction has committed (now, or with the caller's).
        if request.kind == Suspension.Kind.APPROVAL:
            notifications_schedule(suspension_id=suspension.pk, workflow_id=self.workflow_id)
        if expires_at is not None:
            suspension_timer_schedule(suspension_id=suspension.pk, expires_at=expires_at)
        return None

    def _default_timeout(self) -> int | None:
        if is_postgresql():
            row = pg_select_one(
                f"SELECT default_timeout FROM {WorkflowDefinition._meta.db_table} "  # noqa: S608 - names from the models
                "WHERE workflow_id = %s",
                [self.workflow_id],
            )
            return row[0] if row is not None else None
        return (
            WorkflowDefinition.objects.filter(workflow_id=self.workflow_id)
            .values_list("default_timeout", flat=True)
            .first()
        )

    def _finish(self, steps: list[StepRecord], status: str, **changes: Any) -> None:
        now = timezone.now()
        events = self._step_events(steps)
        data: dict[str, Any] = {"status": status}
        if "error" in changes:
            data["error"] = {
                "type": changes["error"].get("type"),
                "message": changes["error"].get("message"),
            }
        events.append(
            self._event(
                ev.lifecycle_topic(self.workflow_id, self.execution_id), ev.EXECUTION_FINISH, data
            )
        )
        self._write(
            {"status": status, "finished_at": now, "updated_at": now, **changes}, steps, events
        )

    def complete(self, execution_id: UUID, steps: list[StepRecord], result: Any) -> None:
        self._finish(steps, Execution.Status.COMPLETED, result=result)

    def fail(self, execution_id: UUID, steps: list[StepRecord], error: dict[str, Any]) -> None:
        self._finish(steps, Execution.Status.FAILED, error=error)
