"""Every write of the engine: one function per transition, each one short transaction.

The approval page, the API, topic events and the admin all decide through
``suspension_resolve``; nothing else changes a suspension's status.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from workflows import events as ev
from workflows.engine.decisions import validate_decision
from workflows.engine.exceptions import WorkflowNotRegistered
from workflows.engine.registry import registry
from workflows.engine.runner import RunOutcome, run_workflow
from workflows.engine.store import StepRecord
from workflows.errors import (
    DecisionForbidden,
    ExecutionFinished,
    ExecutionNotFound,
    IdempotencyConflict,
    ServiceError,
    SuspensionNotFound,
    SuspensionNotPending,
    WorkflowDisabled,
    WorkflowNotFound,
)
from workflows.lock import (
    execution_lease,
    execution_lease_is_free,
    execution_lease_key,
    execution_lease_release,
)
from workflows.models import (
    ApiKey,
    Event,
    Execution,
    StepOutput,
    Suspension,
    WorkflowDefinition,
)
from workflows.store import (
    DjangoStore,
    is_postgresql,
    pg_columns,
    pg_execute,
    pg_insert_values,
    pg_model_from_row,
    pg_select_one,
    steps_load,
)

logger = logging.getLogger(__name__)


def _enqueue(execution_id: UUID) -> None:
    """Nudge a worker once the current transaction commits (the row is the truth)."""
    from workflows.tasks import execution_advance_task

    transaction.on_commit(lambda: execution_advance_task.delay(str(execution_id)))


def _event(
    execution: Execution, topic: str, event_type: str, data: Any, step_key: str = ""
) -> Event:
    return Event(
        topic=topic,
        event_type=event_type,
        execution_id=execution.pk,
        workflow_id=execution.workflow_id,
        step_key=step_key,
        data=data,
        created_at=timezone.now(),
    )


# -- start ------------------------------------------------------------------------------------


def execution_start(
    *,
    workflow_id: str,
    payload: Any,
    idempotency_key: str | None = None,
    user: Any = None,
) -> tuple[Execution, bool]:
    """Start ``workflow_id``; returns ``(execution, created)``.

    The same idempotency key with the same payload returns the first execution
    (``created`` False); with another payload it raises IdempotencyConflict.
    """
    try:
        spec = registry.get(workflow_id)
    except WorkflowNotRegistered:
        raise WorkflowNotFound(workflow_id) from None
    if is_postgresql():
        row = pg_select_one(
            f"SELECT enabled FROM {WorkflowDefinition._meta.db_table} WHERE workflow_id = %s",  # noqa: S608 - names from the models
            [workflow_id],
        )
        enabled = row[0] if row is not None else None
    else:
        enabled = (
            WorkflowDefinition.objects.filter(workflow_id=workflow_id)
            .values_list("enabled", flat=True)
            .first()
        )
    if enabled is False:
        raise WorkflowDisabled(workflow_id)
    clean = spec.validate_payload(payload)
    if idempotency_key:
        existing = _execution_by_key(workflow_id, idempotency_key, clean)
        if existing is not None:
            return existing, False
    now = timezone.now()
    execution = Execution(
        workflow_id=workflow_id,
        workflow_version=spec.version,
        payload=clean,
        idempotency_key=idempotency_key or None,
        started_by=user if getattr(user, "is_authenticated", False) else None,
        created_at=now,
        updated_at=now,
        queued_at=now,
    )
    event = _event(
        execution,
        ev.lifecycle_topic(workflow_id, execution.pk),
        ev.EXECUTION_START,
        {"status": Execution.Status.QUEUED, "payload": clean},
    )
    try:
        if is_postgresql():
            _start_pg(execution, event)
        else:
            with transaction.atomic():
                execution.save(force_insert=True)
                ev.events_append([event])
        _enqueue(execution.pk)
    except IntegrityError:
        # Two starts with one key raced; the other one won.
        existing = _execution_by_key(workflow_id, idempotency_key or "", clean)
        if existing is None:
            raise
        return existing, False
    return execution, True


def _start_pg(execution: Execution, event: Event) -> None:
    """Insert the execution and its start event in one statement (one transaction)."""
    columns, values, params = pg_insert_values(execution, "x_")
    row = pg_execute(
        f"WITH started AS (INSERT INTO {Execution._meta.db_table} ({columns}) "  # noqa: S608 - names from the models, values as parameters
        f"SELECT {values} RETURNING id) "
        f"INSERT INTO {Event._meta.db_table} "
        "(topic, event_type, execution_id, workflow_id, step_key, data, created_at) "
        "SELECT %(topic)s, %(event_type)s, started.id, %(workflow_id)s, '', %(data)s::jsonb, "
        "%(created_at)s FROM started RETURNING sequence_id",
        {
            **params,
            "topic": event.topic,
            "event_type": event.event_type,
            "workflow_id": event.workflow_id,
            "data": json.dumps(event.data),
            "created_at": event.created_at,
        },
    )
    assert row is not None
    for instance in (execution, event):
        instance._state.adding = False
        instance._state.db = connection.alias
    event.sequence_id = row[0]
    payload = [event.as_dict()]
    transaction.on_commit(lambda: ev.events_push(payload))


def _execution_by_key(workflow_id: str, key: str, payload: Any) -> Execution | None:
    existing = Execution.objects.filter(workflow_id=workflow_id, idempotency_key=key).first()
    if existing is not None and existing.payload != payload:
        raise IdempotencyConflict(existing.pk)
    return existing


# -- advance (the worker's side) ------------------------------------------------------------


ADVANCE_DONE = "done"
ADVANCE_SKIPPED = "skipped"
ADVANCE_BUSY = "busy"


def execution_advance(*, execution_id: UUID) -> str:
    """Replay the execution and run it until it suspends or ends.

    Safe to call twice, concurrently or late: the lease lets one caller in, and an execution
    that is not queued or running is left alone. Returns ADVANCE_BUSY when another worker
    holds the lease while the execution is queued (the caller should retry shortly).
    """
    if is_postgresql():
        return _advance_pg(execution_id)
    with execution_lease(execution_id) as held:
        if not held:
            queued = Execution.objects.filter(
                pk=execution_id, status=Execution.Status.QUEUED
            ).exists()
            return ADVANCE_BUSY if queued else ADVANCE_SKIPPED
        now = timezone.now()
        claimed = Execution.objects.filter(
            pk=execution_id, status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING]
        ).update(status=Execution.Status.RUNNING, attempts=F("attempts") + 1, updated_at=now)
        if not claimed:
            return ADVANCE_SKIPPED
        execution = Execution.objects.only("workflow_id", "payload").get(pk=execution_id)
        return _run(execution_id, execution.workflow_id, execution.payload, steps_load)


def _run(
    execution_id: UUID,
    workflow_id: str,
    payload: Any,
    recorded: Callable[[UUID], dict[str, StepRecord]],
) -> str:
    """Run the claimed execution (holding its lease) until it suspends or ends."""
    store = DjangoStore(execution_id=execution_id, workflow_id=workflow_id)
    try:
        spec = registry.get(workflow_id)
    except WorkflowNotRegistered as exc:
        store.fail(
            execution_id,
            [],
            {"type": "WorkflowNotRegistered", "message": str(exc), "traceback": ""},
        )
        return ADVANCE_DONE
    outcome: RunOutcome = run_workflow(
        spec,
        execution_id=execution_id,
        payload=payload,
        recorded=recorded(execution_id),
        store=store,
    )
    logger.debug("execution %s: %s", execution_id, outcome.status)
    return ADVANCE_DONE


# The lease and the claim in one round trip. The claim's commit does not wait for the WAL to
# reach the disk (synchronous_commit off for it alone): losing it in a crash only leaves the
# execution queued, which is re-sent anyway, and every later transition of the execution
# commits synchronously, flushing it too.
_CLAIM_SQL = """
WITH lease AS MATERIALIZED (SELECT pg_try_advisory_lock(%(key)s) AS held),
quiet AS MATERIALIZED (SELECT {quiet} AS setting),
claimed AS (
    UPDATE {execution} SET status = 'running', attempts = attempts + 1, updated_at = %(now)s
    WHERE id = %(id)s AND status IN ('queued', 'running') AND (SELECT held FROM lease)
    RETURNING workflow_id, payload
)
SELECT lease.held, quiet.setting, claimed.workflow_id, claimed.payload,
    (SELECT status FROM {execution} WHERE id = %(id)s)
FROM lease CROSS JOIN quiet LEFT JOIN claimed ON true
"""
_STEPS_SQL = (
    "SELECT step_key, kind, status, output, error, started_at, finished_at FROM {steps} "
    "WHERE execution_id = %s"
)


def _steps_load_pg(execution_id: UUID) -> dict[str, StepRecord]:
    """``steps_load`` without the ORM: one query whatever the number of steps."""
    with connection.cursor() as cursor:
        cursor.execute(_STEPS_SQL.format(steps=StepOutput._meta.db_table), [execution_id])
        rows = cursor.fetchall()
    return {
        step_key: StepRecord(
            step_key=step_key,
            kind=kind,
            status=status,
            output=_json_value(output),
            error=_json_value(error),
            started_at=started_at,
            finished_at=finished_at,
        )
        for step_key, kind, status, output, error, started_at, finished_at in rows
    }


def _json_value(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str | bytes) else raw


def _advance_pg(execution_id: UUID) -> str:
    sql = _CLAIM_SQL.format(
        execution=Execution._meta.db_table,
        steps=StepOutput._meta.db_table,
        # Inside a caller's transaction the setting would apply to all of it: leave it.
        quiet="NULL"
        if connection.in_atomic_block
        else "set_config('synchronous_commit', 'off', true)",
    )
    params = {"key": execution_lease_key(execution_id), "id": execution_id, "now": timezone.now()}
    try:
        row = pg_execute(sql, params)
    except Exception:
        # A session lock taken by a failed statement stays taken: give it back if it was.
        with contextlib.suppress(Exception):
            execution_lease_release(execution_id)
        raise
    assert row is not None
    held, _setting, workflow_id, payload, status = row
    if not held:
        return ADVANCE_BUSY if status == Execution.Status.QUEUED else ADVANCE_SKIPPED
    try:
        if workflow_id is None:
            return ADVANCE_SKIPPED
        return _run(execution_id, workflow_id, _json_value(payload), _steps_load_pg)
    finally:
        execution_lease_release(execution_id)


# -- decide -----------------------------------------------------------------------------------


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def suspension_resolve(
    *,
    execution_id: UUID,
    step_key: str,
    data: Any,
    user: Any = None,
    ip_address: str | None = None,
    user_agent: str = "",
) -> Suspension:
    """Decide a pending suspension: the one write path for every way of deciding.

    Validates ``data`` against the step's decision schema and checks that ``user`` may decide
    (``user`` None is the system itself, e.g. a trusted integration or a test) before
    anything is consumed; then, under the suspension's row lock, records the decision, who
    and when, appends the ``resume`` event, stores the resume value for replay and queues
    the execution. Exactly one of several concurrent deciders wins; the others get
    SuspensionNotPending naming the winner.
    """
    suspension = _suspension_with_execution(execution_id, step_key)
    if suspension is None or suspension.kind != Suspension.Kind.APPROVAL:
        if not Execution.objects.filter(pk=execution_id).exists():
            raise ExecutionNotFound(execution_id)
        raise SuspensionNotFound(execution_id, step_key)
    if suspension.status != Suspension.Status.PENDING:
        raise _not_pending(suspension)
    if user is not None:
        _check_may_decide(user, suspension)
    decision = validate_decision(
        suspend_data=suspension.data, schema_ref=suspension.schema_ref, decision=data
    )
    now = timezone.now()
    if is_postgresql():
        return _resolve_pg(
            suspension, decision, user=user, ip_address=ip_address, user_agent=user_agent, now=now
        )
    with transaction.atomic():
        locked = Suspension.objects.select_for_update().get(pk=suspension.pk)
        if locked.status != Suspension.Status.PENDING:
            raise _not_pending(locked)
        locked.status = Suspension.Status.RESUMED
        locked.decision = decision
        locked.decided_by = user
        locked.decided_at = now
        locked.decided_ip = ip_address
        locked.decided_user_agent = (user_agent or "")[:500]
        locked.save(
            update_fields=[
                "status",
                "decision",
                "decided_by",
                "decided_at",
                "decided_ip",
                "decided_user_agent",
            ]
        )
        execution = suspension.execution
        (event,) = ev.events_append(
            [_event(execution, locked.topic, ev.RESUME, decision, step_key=step_key)]
        )
        _resume_execution(
            locked,
            kind="suspend",
            status=StepOutput.Status.COMPLETED,
            output={
                "event_type": ev.RESUME,
                "topic": locked.topic,
                "data": decision,
                "sequence_id": event.sequence_id,
                "created_at": event.created_at.isoformat(),
                "decided_by": _username(user),
            },
            now=now,
        )
    return locked


def _suspension_with_execution(execution_id: UUID, step_key: str) -> Suspension | None:
    """The suspension with its execution (one query; on PostgreSQL without the ORM's query
    compilation, the decision's hot path)."""
    if not is_postgresql():
        return (
            Suspension.objects.filter(execution_id=execution_id, step_key=step_key)
            .select_related("execution")
            .first()
        )
    row = pg_select_one(
        f"SELECT {pg_columns(Suspension, 's')}, {pg_columns(Execution, 'e')} "  # noqa: S608 - names from the models
        f"FROM {Suspension._meta.db_table} s JOIN {Execution._meta.db_table} e "
        "ON e.id = s.execution_id WHERE s.execution_id = %s AND s.step_key = %s",
        [execution_id, step_key],
    )
    if row is None:
        return None
    count = len(Suspension._meta.concrete_fields)
    suspension = pg_model_from_row(Suspension, row[:count])
    suspension.execution = pg_model_from_row(Execution, row[count:])
    return suspension


# The decision's transaction as one statement: the conditional UPDATE is the row lock and the
# "still pending?" check at once (of concurrent deciders exactly one matches a row).
_RESOLVE_SQL = """
WITH decided AS (
    UPDATE {suspension} SET status = %(status)s, decision = %(decision)s,
        decided_by_id = %(user)s, decided_at = %(now)s, decided_ip = %(ip)s,
        decided_user_agent = %(user_agent)s
    WHERE id = %(id)s AND status = 'pending' RETURNING id),
logged AS (
    INSERT INTO {event} (topic, event_type, execution_id, workflow_id, step_key, data, created_at)
    SELECT %(topic)s, %(event_type)s, %(execution_id)s, %(workflow_id)s, %(step_key)s,
        %(data)s::jsonb, %(created_at)s
    FROM decided RETURNING sequence_id),
recorded AS (
    INSERT INTO {steps} (execution_id, step_key, kind, status, output, error, started_at,
        finished_at)
    SELECT %(execution_id)s, %(step_key)s, 'suspend', %(step_status)s,
        jsonb_set(%(output)s::jsonb, '{{sequence_id}}', to_jsonb(logged.sequence_id)), NULL,
        %(started_at)s, %(now)s
    FROM logged),
queued AS (
    UPDATE {execution} SET status = 'queued', queued_at = %(now)s, updated_at = %(now)s
    WHERE id = %(execution_id)s AND status = 'waiting' AND EXISTS (SELECT 1 FROM decided))
SELECT (SELECT sequence_id FROM logged)
"""


def _resolve_pg(
    suspension: Suspension,
    decision: Any,
    *,
    user: Any,
    ip_address: str | None,
    user_agent: str,
    now: datetime,
) -> Suspension:
    """``suspension_resolve``'s write on PostgreSQL: one statement, one round trip."""
    suspension.decided_by = user
    event = _event(
        suspension.execution, suspension.topic, ev.RESUME, decision, step_key=suspension.step_key
    )
    output = {
        "event_type": ev.RESUME,
        "topic": suspension.topic,
        "data": decision,
        "sequence_id": None,
        "created_at": event.created_at.isoformat(),
        "decided_by": _username(user),
    }
    user_agent = (user_agent or "")[:500]
    row = pg_execute(
        _RESOLVE_SQL.format(
            suspension=Suspension._meta.db_table,
            event=Event._meta.db_table,
            steps=StepOutput._meta.db_table,
            execution=Execution._meta.db_table,
        ),
        {
            "id": suspension.pk,
            "status": Suspension.Status.RESUMED,
            "decision": Suspension._meta.get_field("decision").get_db_prep_save(
                decision, connection
            ),
            "user": suspension.decided_by_id,
            "now": now,
            "ip": Suspension._meta.get_field("decided_ip").get_db_prep_save(ip_address, connection),
            "user_agent": user_agent,
            "topic": event.topic,
            "event_type": event.event_type,
            "execution_id": suspension.execution_id,
            "workflow_id": event.workflow_id,
            "step_key": suspension.step_key,
            "data": json.dumps(decision),
            "created_at": event.created_at,
            "step_status": StepOutput.Status.COMPLETED,
            "output": json.dumps(output),
            "started_at": suspension.created_at,
        },
    )
    sequence_id = row[0] if row is not None else None
    if sequence_id is None:
        raise _not_pending(Suspension.objects.select_related("decided_by").get(pk=suspension.pk))
    suspension.status = Suspension.Status.RESUMED
    suspension.decision = decision
    suspension.decided_at = now
    suspension.decided_ip = ip_address
    suspension.decided_user_agent = user_agent
    event.sequence_id = sequence_id
    event._state.adding = False
    event._state.db = connection.alias
    payload = [event.as_dict()]
    transaction.on_commit(lambda: ev.events_push(payload))
    _enqueue(suspension.execution_id)
    return suspension


def _resume_execution(
    suspension: Suspension,
    *,
    kind: str,
    status: str,
    now: Any,
    output: Any = None,
    error: Any = None,
) -> None:
    """Record the suspension's outcome as its step and queue the execution. In the caller's
    transaction, holding the suspension's row lock."""
    StepOutput.objects.create(
        execution_id=suspension.execution_id,
        step_key=suspension.step_key,
        kind=kind,
        status=status,
        output=output,
        error=error,
        started_at=suspension.created_at,
        finished_at=now,
    )
    Execution.objects.filter(pk=suspension.execution_id, status=Execution.Status.WAITING).update(
        status=Execution.Status.QUEUED, queued_at=now, updated_at=now
    )
    _enqueue(suspension.execution_id)


def _not_pending(suspension: Suspension) -> SuspensionNotPending:
    decided_by = suspension.decided_by.get_username() if suspension.decided_by_id else None  # type: ignore[union-attr]
    return SuspensionNotPending(
        suspension.step_key, suspension.status, decided_by, suspension.decided_at
    )


def _check_may_decide(user: Any, suspension: Suspension) -> None:
    from approvals.permissions import user_may_decide

    if not user_may_decide(user, suspension):
        raise DecisionForbidden(
            f"{user.get_username()} may not decide {suspension.step_key!r} of "
            f"{suspension.workflow_id!r}"
        )


# -- timeouts -----------------------------------------------------------------------------------
# When each deadline is looked at (eta messages, the beat sweep) is workflows/timers.py's
# business; here a due suspension is timed out, once, under its row lock.


def _due_locked(now: Any) -> QuerySet[Suspension]:
    """Due pending suspensions, locked with their execution. Rows someone else holds are
    skipped, never waited for: a decider, a canceller or another sweeper is settling them, and
    a firer that never waits cannot deadlock with them (a canceller locks the execution, then
    its suspensions). Call inside ``transaction.atomic()``."""
    return (
        Suspension.objects.select_for_update(
            skip_locked=True, no_key=True, of=("self", "execution")
        )
        .filter(status=Suspension.Status.PENDING, expires_at__lte=now)
        .select_related("execution")
    )


def suspension_expire(*, suspension_id: int) -> bool:
    """Time out one pending suspension whose deadline has passed; False if there was nothing to
    do (decided, cancelled, not due yet, or being settled by someone else right now). Races
    with a decision or a cancel have one winner: the row lock."""
    now = timezone.now()
    with transaction.atomic():
        suspension = _due_locked(now).filter(pk=suspension_id).first()
        if suspension is None:
            return False
        _expire_locked(suspension, now)
    return True


def suspensions_expire_due(*, limit: int = 500) -> int:
    """The beat sweep's half that fires: time out every due pending suspension, in batches of
    ``limit`` (one transaction each). Returns how many fired."""
    fired = 0
    now = timezone.now()
    while True:
        with transaction.atomic():
            batch = list(_due_locked(now).order_by("expires_at")[:limit])
            for suspension in batch:
                _expire_locked(suspension, now)
        fired += len(batch)
        if len(batch) < limit:
            return fired


def _expire_locked(suspension: Suspension, now: Any) -> None:
    """Mark the suspension timed out, log its ``timeout`` event (approvals), record the step's
    outcome for replay and queue the execution. Holding the suspension's row lock."""
    suspension.status = Suspension.Status.TIMED_OUT
    suspension.decided_at = now
    suspension.save(update_fields=["status", "decided_at"])
    expires_at = suspension.expires_at.isoformat() if suspension.expires_at else None
    if suspension.kind == Suspension.Kind.SLEEP:
        _resume_execution(
            suspension,
            kind="sleep",
            status=StepOutput.Status.COMPLETED,
            output={"woke_at": now.isoformat(), "until": expires_at},
            now=now,
        )
        return
    (event,) = ev.events_append(
        [
            _event(
                suspension.execution,
                suspension.topic,
                ev.TIMEOUT,
                {
                    "expires_at": expires_at,
                    "default_applied": suspension.has_default,
                    "default": suspension.default,
                },
                step_key=suspension.step_key,
            )
        ]
    )
    if suspension.has_default:
        # Shaped like a resume event, so the workflow reads ``["data"]`` either way.
        _resume_execution(
            suspension,
            kind="suspend",
            status=StepOutput.Status.COMPLETED,
            output={
                "event_type": ev.TIMEOUT,
                "topic": suspension.topic,
                "data": suspension.default,
                "sequence_id": event.sequence_id,
                "created_at": event.created_at.isoformat(),
                "decided_by": None,
            },
            now=now,
        )
    else:
        # Replayed as SuspendTimeout (workflows/engine/context.py) with this message.
        _resume_execution(
            suspension,
            kind="suspend",
            status=StepOutput.Status.FAILED,
            error={
                "type": "SuspendTimeout",
                "message": f"suspension {suspension.step_key!r} timed out: "
                f"no decision by its deadline {expires_at}",
                "expires_at": expires_at,
            },
            now=now,
        )


# -- cancel -----------------------------------------------------------------------------------


def execution_cancel(*, execution_id: UUID, user: Any = None) -> Execution:
    """Cancel a queued, running or waiting execution and its pending suspensions.

    A running workflow stops at its next transition: nothing after the current step runs.
    """
    now = timezone.now()
    with transaction.atomic():
        # Suspensions first, then the execution: the order a decision takes them in, so a
        # decision and a cancel racing never deadlock (one of them simply waits).
        pending = list(
            Suspension.objects.select_for_update().filter(
                execution_id=execution_id, status=Suspension.Status.PENDING
            )
        )
        execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
        if execution is None:
            raise ExecutionNotFound(execution_id)
        if execution.is_finished:
            raise ExecutionFinished(execution_id, execution.status)
        execution.status = Execution.Status.CANCELLED
        execution.finished_at = now
        execution.updated_at = now
        execution.save(update_fields=["status", "finished_at", "updated_at"])
        events = [
            _event(
                execution,
                ev.lifecycle_topic(execution.workflow_id, execution.pk),
                ev.EXECUTION_FINISH,
                {"status": Execution.Status.CANCELLED, "cancelled_by": _username(user)},
            )
        ]
        for suspension in pending:
            suspension.status = Suspension.Status.CANCELLED
            suspension.decided_at = now
            suspension.decided_by = user
            suspension.save(update_fields=["status", "decided_at", "decided_by"])
            if suspension.kind == Suspension.Kind.APPROVAL:
                events.append(
                    _event(
                        execution,
                        suspension.topic,
                        "cancel",
                        {"cancelled_by": _username(user)},
                        step_key=suspension.step_key,
                    )
                )
        ev.events_append(events)
    return execution


# -- recovery and start-up --------------------------------------------------------------------


def executions_requeue_stale(*, older_than: float | None = None, limit: int = 1000) -> int:
    """Re-send executions the broker lost: queued but not picked up in time, or running with
    nobody holding their lease (a worker died). Returns how many were re-sent."""
    from workflows.tasks import execution_advance_task

    age = settings.POLOS_REQUEUE_AFTER if older_than is None else older_than
    now = timezone.now()
    cutoff = now - timedelta(seconds=age)
    candidates = list(
        Execution.objects.filter(
            status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING], queued_at__lte=cutoff
        )
        .order_by("queued_at")
        .values_list("pk", "status")[:limit]
    )
    resent = 0
    for execution_id, status in candidates:
        if status == Execution.Status.RUNNING and not execution_lease_is_free(execution_id):
            continue
        Execution.objects.filter(pk=execution_id).update(queued_at=now)
        execution_advance_task.delay(str(execution_id))
        resent += 1
    return resent


def workflow_definitions_sync() -> None:
    """Mirror the code registry into WorkflowDefinition rows, keeping admin settings."""
    specs = registry.all()
    for spec in specs:
        definition, created = WorkflowDefinition.objects.get_or_create(
            workflow_id=spec.id,
            defaults={"version": spec.version, "description": spec.description},
        )
        if not created and (
            definition.version != spec.version
            or definition.description != spec.description
            or not definition.registered
        ):
            definition.version = spec.version
            definition.description = spec.description
            definition.registered = True
            definition.save(update_fields=["version", "description", "registered", "updated_at"])
    WorkflowDefinition.objects.exclude(workflow_id__in=[spec.id for spec in specs]).update(
        registered=False
    )


def runtime_startup() -> None:
    """What ``polos_run`` does before serving: sync definitions; in embedded mode (whose
    in-process broker forgot everything on restart) re-send every queued or orphaned
    execution."""
    workflow_definitions_sync()
    if settings.EMBEDDED:
        executions_requeue_stale(older_than=0)


# -- integration surface: API keys and published events ------------------------------------------
# Added for the HTTP API (issue #5); the API, the admin and ``create_api_key`` write through these.

API_KEY_PREFIX = "pk_"
#: Event types only the engine writes; a publisher may not forge them.
ENGINE_EVENT_TYPES = frozenset(
    {ev.SUSPEND, ev.TIMEOUT, ev.EXECUTION_START, ev.STEP_FINISH, ev.EXECUTION_FINISH, "cancel"}
)


class EventInvalid(ServiceError):
    code = "event_invalid"


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, name: str, user: Any) -> tuple[ApiKey, str]:
    """Create an API key for ``user``; returns ``(key, raw_key)``. The raw key is stored
    nowhere: show it once."""
    for _attempt in range(5):
        prefix = API_KEY_PREFIX + secrets.token_hex(4)
        raw_key = prefix + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    name=name, user=user, prefix=prefix, key_hash=api_key_hash(raw_key)
                )
        except IntegrityError:  # a prefix collision: draw again
            continue
        return key, raw_key
    raise RuntimeError("could not draw a unique API key prefix")


def event_publish(
    *,
    topic: str,
    event_type: str,
    data: Any,
    user: Any = None,
    ip_address: str | None = None,
    user_agent: str = "",
) -> Event:
    """Publish an event on ``topic``; returns the logged event.

    A ``resume`` on ``{step_key}/{execution_id}`` is a decision: it goes through
    ``suspension_resolve`` (same validation, permissions and errors) and returns the resume
    event that service logged. Engine event types are refused; anything else is stored and
    pushed to live listeners.
    """
    if event_type == ev.RESUME:
        step_key, execution_id = _step_topic_parse(topic)
        suspension = suspension_resolve(
            execution_id=execution_id,
            step_key=step_key,
            data=data,
            user=user,
            ip_address=ip_address,
            user_agent=user_agent,
        )
        return Event.objects.filter(
            topic=suspension.topic, event_type=ev.RESUME, execution_id=execution_id
        ).latest("sequence_id")
    if event_type in ENGINE_EVENT_TYPES:
        raise EventInvalid(f"event type {event_type!r} is reserved to the engine")
    with transaction.atomic():
        (event,) = ev.events_append(
            [Event(topic=topic, event_type=event_type, data=data, created_at=timezone.now())]
        )
    return event


def _step_topic_parse(topic: str) -> tuple[str, UUID]:
    step_key, _, raw_id = topic.rpartition("/")
    if not step_key:
        raise EventInvalid("a resume event's topic must be '{step_key}/{execution_id}'")
    try:
        return step_key, UUID(raw_id)
    except ValueError:
        raise ExecutionNotFound(raw_id) from None


# -- retry (admin) ------------------------------------------------------------------------------
# Added for the console (issue #6): the admin's "retry" action calls this.

EXECUTION_RETRY = "execution_retry"


def execution_retry(*, execution_id: UUID, user: Any = None) -> Execution:
    """Send a failed execution back to the queue. Its completed steps are kept and replay; its
    failed steps are forgotten and run again, and an approval whose timeout failed it (no
    default) is asked again.

    One short transaction under the execution's row lock; a worker runs it after the commit.
    Raises ExecutionNotRetryable unless the execution is failed.
    """
    from workflows.errors import ExecutionNotRetryable

    now = timezone.now()
    with transaction.atomic():
        execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
        if execution is None:
            raise ExecutionNotFound(execution_id)
        if execution.status != Execution.Status.FAILED:
            raise ExecutionNotRetryable(execution_id, execution.status)
        failed_steps = StepOutput.objects.filter(
            execution_id=execution_id, status=StepOutput.Status.FAILED
        )
        failed_keys = sorted(failed_steps.values_list("step_key", flat=True))
        failed_steps.delete()
        # The timed-out approval holds no decision, and its (execution, step_key) is needed
        # for the new one; the event log keeps its suspend and timeout events.
        Suspension.objects.filter(execution_id=execution_id, step_key__in=failed_keys).exclude(
            status=Suspension.Status.PENDING
        ).delete()
        error = execution.error or {}
        execution.status = Execution.Status.QUEUED
        execution.error = None
        execution.result = None
        execution.finished_at = None
        execution.queued_at = now
        execution.updated_at = now
        execution.save(
            update_fields=["status", "error", "result", "finished_at", "queued_at", "updated_at"]
        )
        ev.events_append(
            [
                _event(
                    execution,
                    ev.lifecycle_topic(execution.workflow_id, execution.pk),
                    EXECUTION_RETRY,
                    {
                        "status": Execution.Status.QUEUED,
                        "retried_by": _username(user),
                        "failed_steps": failed_keys,
                        "previous_error": {
                            "type": error.get("type"),
                            "message": error.get("message"),
                        },
                    },
                )
            ]
        )
        _enqueue(execution.pk)
    return execution
