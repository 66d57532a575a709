"""Many waiting executions, fast: one is run by the engine itself (the template), then cloned
in bulk, rows and events alike, so that each clone is exactly what the engine writes for a
waiting execution (and a worker can resume it)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock
from uuid import UUID

from django.db import connection, models, transaction

from workflows import services
from workflows.bench.workload import BENCH_CYCLE_WORKFLOW
from workflows.models import Event, Execution, StepOutput, Suspension

#: Clones are dated this far apart, going back in time from the template.
SPACING = timedelta(milliseconds=10)
CHUNK = 100_000
TEMPLATE_TABLES: tuple[type[models.Model], ...] = (Execution, StepOutput, Suspension, Event)


def waiting_template() -> UUID:
    """Run one bench execution to its suspension in this process (no broker message: no worker
    races it); its rows are the template."""
    from workflows.tasks import execution_advance_task

    with mock.patch.object(execution_advance_task, "delay"):
        execution, _ = services.execution_start(workflow_id=BENCH_CYCLE_WORKFLOW, payload={"n": 1})
        services.execution_advance(execution_id=execution.pk)
    status = Execution.objects.filter(pk=execution.pk).values_list("status", flat=True).get()
    if status != Execution.Status.WAITING:
        raise RuntimeError(f"the template execution is {status}, not waiting")
    return execution.pk


def _owner_filter(model: type[models.Model]) -> str:
    return "id" if model is Execution else "execution_id"


def waiting_clone(template: UUID, count: int, progress: Callable[[str], None]) -> None:
    """Insert ``count`` copies of the template execution's rows."""
    if count <= 0:
        return
    if connection.vendor == "postgresql":
        _clone_sql(template, count, progress)
    else:
        _clone_orm(template, count, progress)


def _column_expression(field: models.Field) -> str | None:
    """The SELECT expression of one column of a clone (``t`` the template row, ``ids`` the
    clone's id and age); None to leave it to its default (serial keys)."""
    column = connection.ops.quote_name(str(field.column))
    if isinstance(field, models.AutoField | models.BigAutoField):
        return None
    if field.primary_key or (field.is_relation and field.related_model is Execution):
        return "ids.id"
    if isinstance(field, models.DateTimeField):
        return f"t.{column} - ids.age"
    if isinstance(field, models.JSONField):
        return f"replace(t.{column}::text, %(template)s, ids.id::text)::jsonb"
    if isinstance(field, models.CharField | models.TextField):
        return f"replace(t.{column}, %(template)s, ids.id::text)"
    return f"t.{column}"


def _clone_sql(template: UUID, count: int, progress: Callable[[str], None]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS polos_bench_ids")
        cursor.execute(
            "CREATE TEMP TABLE polos_bench_ids AS SELECT i, gen_random_uuid() AS id,"
            " (i * %s::double precision) * interval '1 second' AS age"
            " FROM generate_series(1, %s) AS i",
            [SPACING.total_seconds(), count],
        )
        for model in TEMPLATE_TABLES:
            started = time.monotonic()
            fields = model._meta.concrete_fields
            pairs = [
                (connection.ops.quote_name(str(field.column)), _column_expression(field))
                for field in fields
            ]
            pairs = [(column, expression) for column, expression in pairs if expression]
            table = connection.ops.quote_name(model._meta.db_table)
            order = "ids.i, t.sequence_id" if model is Event else "ids.i"
            for first in range(1, count + 1, CHUNK):
                with transaction.atomic():
                    cursor.execute(
                        f"INSERT INTO {table} ({', '.join(c for c, _ in pairs)}) "  # noqa: S608
                        f"SELECT {', '.join(e for _, e in pairs)} "  # type: ignore[misc]
                        f"FROM {table} AS t, polos_bench_ids AS ids "
                        f"WHERE t.{_owner_filter(model)} = %(template_id)s "
                        f"AND ids.i BETWEEN %(first)s AND %(last)s ORDER BY {order}",
                        {
                            "template": str(template),
                            "template_id": template,
                            "first": first,
                            "last": min(first + CHUNK - 1, count),
                        },
                    )
            progress(f"  {model._meta.db_table}: {time.monotonic() - started:.1f} s")
        cursor.execute("DROP TABLE polos_bench_ids")
        cursor.execute(
            "ANALYZE "
            + ", ".join(connection.ops.quote_name(m._meta.db_table) for m in TEMPLATE_TABLES)
        )


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict | list):
        return json.loads(json.dumps(value).replace(old, new))
    return value


def _clone_orm(template: UUID, count: int, progress: Callable[[str], None]) -> None:
    old = str(template)
    rows = {
        model: list(
            model._default_manager.filter(**{_owner_filter(model): template}).order_by("pk")
        )
        for model in TEMPLATE_TABLES
    }
    batch = 500
    for first in range(0, count, batch):
        clones: dict[type[models.Model], list[models.Model]] = {m: [] for m in TEMPLATE_TABLES}
        for index in range(first, min(first + batch, count)):
            new_id = uuid.uuid4()
            new = str(new_id)
            age = SPACING * (index + 1)
            for model, originals in rows.items():
                for original in originals:
                    values: dict[str, Any] = {}
                    for field in model._meta.concrete_fields:
                        value = getattr(original, field.attname)
                        if isinstance(field, models.AutoField | models.BigAutoField):
                            continue
                        if field.primary_key or (
                            field.is_relation and field.related_model is Execution
                        ):
                            value = new_id
                        elif isinstance(field, models.DateTimeField) and value is not None:
                            value = value - age
                        else:
                            value = _replace(value, old, new)
                        values[field.attname] = value
                    clones[model].append(model(**values))
        with transaction.atomic():
            for model in TEMPLATE_TABLES:
                model._default_manager.bulk_create(clones[model])
    progress(f"  {count} clones")
