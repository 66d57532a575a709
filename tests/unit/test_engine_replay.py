"""Replay, memoisation, suspend/resume, timeouts, write buffering and cancellation of the
engine, driven through ``run_workflow`` on the in-memory store (no database)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.engine import Engine
from workflows import StepExecutionError, SuspendTimeout, WorkflowContext, workflow
from workflows.engine.decisions import import_schema
from workflows.engine.runner import RunOutcome

pytestmark = pytest.mark.unit


@pytest.fixture
def engine() -> Engine:
    return Engine()


class Quote(BaseModel):
    sku: str
    cents: int
    valid_until: date


class ApprovalDecision(BaseModel):
    approved: bool
    comment: str = ""


def quote_for(sku: str) -> Quote:
    return Quote(sku=sku, cents=1250, valid_until=date(2030, 1, 31))


# -- replay & memoisation -----------------------------------------------------------------------


def test_step_function_runs_once_across_several_replays(engine):
    # given a workflow whose first step is followed by two suspensions (three runs in all)
    calls = Counter()

    def reserve(sku: str) -> dict[str, Any]:
        calls[sku] += 1
        return {"reservation": f"R-{sku}"}

    @workflow(id="unit-replay-runs-once")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        reservation = ctx.step.run("reserve", reserve, "sku-1")
        ctx.step.suspend("first")
        ctx.step.suspend("second")
        return reservation

    # when it is run, resumed, run again, resumed and run to the end
    assert engine.run(flow).status == "suspended"
    engine.resume("first", {})
    assert engine.run(flow).status == "suspended"
    engine.resume("second", {})
    outcome = engine.run(flow)

    # then the step's function ran exactly once and every run saw its output
    assert calls == {"sku-1": 1}
    assert outcome == RunOutcome("completed", result={"reservation": "R-sku-1"})


def test_replay_returns_the_recorded_output_without_calling_the_function(engine):
    # given a step whose output was recorded, then a suspension
    source = {"rate": 1.1}
    seen = []

    @workflow(id="unit-replay-from-record")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        rate = ctx.step.run("rate", lambda: source["rate"])
        seen.append(rate)
        ctx.step.suspend("confirm")
        return rate

    engine.run(flow)
    # when the outside world changes and the record is all that is left
    source["rate"] = 99.0
    record = engine.execution.steps["rate"]
    engine.execution.steps["rate"] = dataclasses.replace(record, output=1.25)
    engine.resume("confirm", {})
    outcome = engine.run(flow)

    # then the replay returns what the record says, not a fresh call
    assert seen == [1.1, 1.25]
    assert outcome.result == 1.25


def test_pydantic_output_comes_back_as_the_model_on_first_run_and_on_replay(engine):
    # given a step function annotated to return a pydantic model
    seen: list[Any] = []

    @workflow(id="unit-replay-model-output")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        quote = ctx.step.run("quote", quote_for, "sku-9")
        seen.append(quote)
        ctx.step.suspend("accept")
        return quote.cents

    # when it runs, then replays after the resume
    engine.run(flow)
    engine.resume("accept", {})
    outcome = engine.run(flow)

    # then both runs received the model (dates included), and the record holds its JSON form
    expected = Quote(sku="sku-9", cents=1250, valid_until=date(2030, 1, 31))
    assert seen == [expected, expected]
    assert all(type(quote) is Quote for quote in seen)
    assert engine.execution.steps["quote"].output == {
        "sku": "sku-9",
        "cents": 1250,
        "valid_until": "2030-01-31",
    }
    assert outcome.result == 1250


def test_non_json_step_output_fails_the_execution_with_a_clear_error(engine):
    # given a step that returns something JSON cannot hold
    calls = []

    def open_connection() -> object:
        calls.append(1)
        return object()

    @workflow(id="unit-replay-non-json-output")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return ctx.step.run("connect", open_connection)

    # when it runs
    outcome = engine.run(flow)

    # then the execution fails naming the step and the reason, and the function (which did
    # succeed) is not run again by retries
    assert outcome.status == "failed"
    assert "'connect'" in outcome.error["message"]
    assert "cannot be stored as JSON" in outcome.error["message"]
    assert engine.execution.status == "failed"
    assert engine.execution.steps["connect"].error["type"] == "OutputNotSerializable"
    assert calls == [1]
    assert engine.sleeps == []


def test_non_json_workflow_result_fails_the_execution(engine):
    # given a workflow returning something JSON cannot hold
    @workflow(id="unit-replay-non-json-result")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return {"handle": object()}

    # when it runs
    outcome = engine.run(flow)

    # then it fails with OutputNotSerializable naming the workflow, and nothing is completed
    assert outcome.status == "failed"
    assert outcome.error["type"] == "OutputNotSerializable"
    assert "'unit-replay-non-json-result'" in outcome.error["message"]
    assert engine.execution.status == "failed"
    assert engine.execution.result is None


# -- suspend --------------------------------------------------------------------------------------


def test_first_run_registers_a_pending_suspension_and_parks(engine):
    # given a workflow that asks for an approval
    after_suspend = []

    @workflow(id="unit-replay-suspend-parks")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", data={"amount": 120, "currency": "EUR"}, timeout=3600)
        after_suspend.append(True)
        return "done"

    # when it runs for the first time
    before = datetime.now(UTC)
    outcome = engine.run(flow)
    after = datetime.now(UTC)

    # then it is parked on that step, waiting, with a pending request carrying the data
    assert outcome == RunOutcome("suspended", step_key="approve")
    assert engine.execution.status == "waiting"
    assert engine.execution.suspension_status == {"approve": "pending"}
    request = engine.execution.suspensions["approve"]
    assert request.kind == "approval"
    assert request.data == {"amount": 120, "currency": "EUR"}
    assert request.has_default is False
    assert before + timedelta(hours=1) <= request.expires_at <= after + timedelta(hours=1)
    assert after_suspend == []
    assert engine.execution.events[-1]["topic"] == f"approve/{engine.execution_id}"
    assert engine.execution.events[-1]["event_type"] == "suspend"


@pytest.mark.parametrize(
    ("timeout", "deadline"),
    [
        (90, timedelta(seconds=90)),
        (0.5, timedelta(seconds=0.5)),
        (timedelta(days=2), timedelta(days=2)),
        (None, None),
    ],
    ids=["int-seconds", "float-seconds", "timedelta", "forever"],
)
def test_suspend_deadline_follows_the_timeout(engine, timeout, deadline):
    # given a suspension with this timeout
    @workflow(id="unit-replay-suspend-deadline")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", timeout=timeout)

    # when it parks
    before = datetime.now(UTC)
    engine.run(flow)
    after = datetime.now(UTC)

    # then it expires that long from now, or never
    expires_at = engine.execution.suspensions["approve"].expires_at
    if deadline is None:
        assert expires_at is None
    else:
        assert before + deadline <= expires_at <= after + deadline


@pytest.mark.parametrize("timeout", [0, -5, timedelta(0)])
def test_non_positive_suspend_timeout_is_refused(engine, timeout):
    # given a suspension with a timeout that has already run out
    @workflow(id="unit-replay-suspend-bad-timeout")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", timeout=timeout)

    # when it runs
    outcome = engine.run(flow)

    # then nothing is parked and the execution fails explaining the timeout
    assert outcome.status == "failed"
    assert outcome.error["type"] == "ValueError"
    assert "timeout must be positive" in outcome.error["message"]
    assert engine.execution.suspensions == {}


def test_suspend_accepts_a_pydantic_model_as_data(engine):
    # given suspend data given as a model
    @workflow(id="unit-replay-suspend-model-data")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("accept", data=quote_for("sku-3"))

    # when it parks
    engine.run(flow)

    # then the request holds the model's JSON form
    assert engine.execution.suspensions["accept"].data == {
        "sku": "sku-3",
        "cents": 1250,
        "valid_until": "2030-01-31",
    }


def test_suspend_refuses_data_that_is_not_an_object(engine):
    # given suspend data that is a list
    @workflow(id="unit-replay-suspend-list-data")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", data=["not", "an", "object"])

    # when it runs
    outcome = engine.run(flow)

    # then it fails before anything is parked
    assert outcome.status == "failed"
    assert outcome.error["type"] == "TypeError"
    assert "'approve'" in outcome.error["message"]
    assert engine.execution.suspensions == {}


def test_suspend_with_a_schema_records_an_importable_schema_ref(engine):
    # given a suspension whose decision is described by a pydantic model
    @workflow(id="unit-replay-suspend-schema")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", data={"amount": 5}, schema=ApprovalDecision)

    # when it parks
    engine.run(flow)

    # then the request carries the JSON schema and a reference the decision service can import
    request = engine.execution.suspensions["approve"]
    assert request.decision_schema == ApprovalDecision.model_json_schema()
    assert import_schema(request.schema_ref) is ApprovalDecision


def test_malformed_form_is_refused_when_suspending_not_when_deciding(engine):
    # given suspend data with a _form using an unknown field type
    @workflow(id="unit-replay-suspend-bad-form")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", data={"_form": {"fields": [{"name": "d", "type": "date"}]}})

    # when it runs
    outcome = engine.run(flow)

    # then the workflow fails at once and nobody is asked to decide
    assert outcome.status == "failed"
    assert "unknown type 'date'" in outcome.error["message"]
    assert engine.execution.suspensions == {}


def test_resume_returns_the_resume_event_and_the_workflow_continues(engine):
    # given a parked approval
    @workflow(id="unit-replay-resume-event")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        event = ctx.step.suspend("approve", data={"amount": 10})
        return {"event": event, "status": "paid" if event["data"]["approved"] else "refused"}

    engine.run(flow)

    # when someone decides and the execution is replayed
    engine.resume("approve", {"approved": True, "comment": "fine"}, decided_by="alice")
    outcome = engine.run(flow)

    # then suspend returns the resume event and the workflow runs to its end
    assert outcome.status == "completed"
    assert outcome.result["status"] == "paid"
    event = outcome.result["event"]
    assert event["event_type"] == "resume"
    assert event["topic"] == f"approve/{engine.execution_id}"
    assert event["data"] == {"approved": True, "comment": "fine"}
    assert event["decided_by"] == "alice"
    assert isinstance(event["sequence_id"], int)
    assert engine.execution.status == "completed"
    assert engine.execution.result == outcome.result


def test_steps_before_a_suspend_are_not_rerun_after_the_resume(engine):
    # given steps, a suspension, then a step
    calls = Counter()

    def step(name: str) -> str:
        calls[name] += 1
        return name.upper()

    @workflow(id="unit-replay-before-suspend")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        a = ctx.step.run("validate", step, "validate")
        b = ctx.step.run("reserve", step, "reserve")
        ctx.step.suspend("approve")
        c = ctx.step.run("charge", step, "charge")
        return [a, b, c]

    # when it parks, is resumed and finishes
    engine.run(flow)
    assert calls == {"validate": 1, "reserve": 1}
    engine.resume("approve", {"approved": True})
    outcome = engine.run(flow)

    # then each step ran once
    assert calls == {"validate": 1, "reserve": 1, "charge": 1}
    assert outcome.result == ["VALIDATE", "RESERVE", "CHARGE"]


def test_two_suspends_in_a_row_each_get_their_own_decision(engine):
    # given a manager approval followed by a finance approval
    @workflow(id="unit-replay-multi-stage")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        manager = ctx.step.suspend("manager", data={"stage": "manager"})
        finance = ctx.step.suspend(
            "finance", data={"stage": "finance", "manager_said": manager["data"]["comment"]}
        )
        return {"manager": manager["data"], "finance": finance["data"]}

    # when it runs, the manager decides, it runs again
    first = engine.run(flow)
    engine.resume("manager", {"approved": True, "comment": "ok by me"}, decided_by="mia")
    second = engine.run(flow)

    # then it parks again on the second stage, which sees the first decision
    assert first == RunOutcome("suspended", step_key="manager")
    assert second == RunOutcome("suspended", step_key="finance")
    assert engine.execution.suspensions["finance"].data == {
        "stage": "finance",
        "manager_said": "ok by me",
    }
    assert engine.execution.suspension_status == {"manager": "resumed", "finance": "pending"}

    # when finance decides
    engine.resume("finance", {"approved": False, "comment": "over budget"}, decided_by="fred")
    outcome = engine.run(flow)

    # then each stage returned its own decision
    assert outcome.result == {
        "manager": {"approved": True, "comment": "ok by me"},
        "finance": {"approved": False, "comment": "over budget"},
    }


# -- timeouts -------------------------------------------------------------------------------------


def test_timeout_without_default_raises_suspend_timeout_the_workflow_can_catch(engine):
    # given a workflow that handles a missed deadline
    @workflow(id="unit-replay-timeout-caught")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        try:
            ctx.step.suspend("approve", timeout=60)
        except StepExecutionError as exc:
            return {
                "timed_out": isinstance(exc, SuspendTimeout),
                "step_key": exc.step_key,
                "error_type": exc.error_type,
                "message": str(exc),
            }
        return {"timed_out": False}

    engine.run(flow)

    # when the deadline passes and the execution is replayed
    engine.time_out("approve")
    outcome = engine.run(flow)

    # then suspend raised SuspendTimeout (a StepExecutionError) naming the step
    assert outcome.status == "completed"
    assert outcome.result["timed_out"] is True
    assert outcome.result["step_key"] == "approve"
    assert outcome.result["error_type"] == "SuspendTimeout"
    assert "'approve'" in outcome.result["message"]


def test_uncaught_suspend_timeout_fails_the_execution(engine):
    # given a workflow that does not handle a missed deadline
    after = []

    @workflow(id="unit-replay-timeout-uncaught")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("approve", timeout=60)
        after.append(True)

    engine.run(flow)

    # when the deadline passes and the execution is replayed
    engine.time_out("approve")
    outcome = engine.run(flow)

    # then the execution fails with SuspendTimeout and nothing after the suspend ran
    assert outcome.status == "failed"
    assert outcome.error["type"] == "SuspendTimeout"
    assert "'approve'" in outcome.error["message"]
    assert engine.execution.status == "failed"
    assert after == []


@pytest.mark.parametrize(
    "default", [{"approved": False, "comment": "no answer"}, None, 0], ids=["dict", "none", "zero"]
)
def test_timeout_with_default_returns_a_timeout_event_carrying_the_default(engine, default):
    # given a suspension with a default (None and 0 are defaults too)
    @workflow(id="unit-replay-timeout-default")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return ctx.step.suspend("approve", timeout=timedelta(minutes=2), default=default)

    engine.run(flow)
    assert engine.execution.suspensions["approve"].has_default is True

    # when the deadline passes
    engine.time_out("approve")
    outcome = engine.run(flow)

    # then suspend returns a timeout event whose data is the default
    assert outcome.status == "completed"
    assert outcome.result["event_type"] == "timeout"
    assert outcome.result["data"] == default
    assert outcome.result["topic"] == f"approve/{engine.execution_id}"


# -- write buffering ------------------------------------------------------------------------------


class WorkerCrash(BaseException):
    """The worker process dies: nothing in the engine handles this."""


def test_a_crash_in_the_second_step_never_reruns_the_first(engine):
    # given two steps, the second of which kills the worker once
    calls = Counter()
    crash = {"armed": True}

    def first() -> int:
        calls["first"] += 1
        return 1

    def second() -> int:
        calls["second"] += 1
        if crash["armed"]:
            raise WorkerCrash
        return 2

    @workflow(id="unit-replay-crash")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return ctx.step.run("first", first) + ctx.step.run("second", second)

    # when the worker dies in the second step
    with pytest.raises(WorkerCrash):
        engine.run(flow)

    # then the first step was already durable before the second began
    assert engine.execution.steps["first"].output == 1
    assert "second" not in engine.execution.steps

    # and when another worker picks the execution up, the first step is not run again
    crash["armed"] = False
    outcome = engine.run(flow)
    assert outcome == RunOutcome("completed", result=3)
    assert calls == {"first": 1, "second": 2}


def test_each_new_run_step_flushes_the_steps_finished_before_it(engine):
    # given three steps; the third looks at what is durable when it starts
    durable_at_third = []

    def third() -> int:
        durable_at_third.append(sorted(engine.execution.steps))
        return 3

    @workflow(id="unit-replay-flush-order")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("one", lambda: 1)
        token = ctx.step.uuid("token")
        ctx.step.run("two", lambda: 2)
        ctx.step.run("three", third)
        return str(token)

    # when it runs
    engine.run(flow)

    # then steps one, token and two were written before three started, and each transition
    # is one transaction: flush before two, flush before three, complete
    assert durable_at_third == [["one", "token", "two"]]
    assert engine.store.transactions == 3
    assert sorted(engine.execution.steps) == ["one", "three", "token", "two"]


def test_step_then_suspend_is_one_transaction_and_resume_step_done_is_one(engine):
    # given step A, a suspension, step B
    @workflow(id="unit-replay-transactions")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        a = ctx.step.run("a", lambda: "A")
        decision = ctx.step.suspend("approve")
        b = ctx.step.run("b", lambda: "B")
        return [a, decision["data"]["ok"], b]

    # when it runs up to the suspension
    engine.run(flow)

    # then step A was written together with the suspension, in one transaction
    assert engine.store.transactions == 1
    assert engine.execution.steps["a"].output == "A"
    assert engine.execution.status == "waiting"

    # when it is resumed and runs to the end
    engine.resume("approve", {"ok": True})
    before = engine.store.transactions
    outcome = engine.run(flow)

    # then step B was written together with the completion, in one transaction
    assert engine.store.transactions - before == 1
    assert engine.execution.steps["b"].output == "B"
    assert engine.execution.status == "completed"
    assert outcome.result == ["A", True, "B"]


def test_failure_persists_the_steps_finished_before_it(engine):
    # given a step followed by a bug in the workflow code
    @workflow(id="unit-replay-fail-carries-steps")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("a", lambda: "A")
        raise KeyError("missing-setting")

    # when it runs
    outcome = engine.run(flow)

    # then the failure (with its type, message and traceback) and step A are stored together
    assert outcome.status == "failed"
    assert outcome.error["type"] == "KeyError"
    assert "missing-setting" in outcome.error["message"]
    assert "Traceback" in outcome.error["traceback"]
    assert engine.execution.error == outcome.error
    assert engine.execution.steps["a"].output == "A"
    assert engine.store.transactions == 1


# -- cancellation ---------------------------------------------------------------------------------


def test_cancel_between_steps_stops_before_the_next_step(engine):
    # given an execution cancelled (by someone else) after its first step
    ran = []

    @workflow(id="unit-replay-cancel-between")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("first", ran.append, "first")
        engine.execution.status = "cancelled"
        ctx.step.run("second", ran.append, "second")
        return "finished"

    # when it runs
    outcome = engine.run(flow)

    # then the second step never starts and the cancellation is not overwritten
    assert outcome == RunOutcome("cancelled")
    assert ran == ["first"]
    assert engine.execution.status == "cancelled"
    assert engine.execution.result is None


def test_cancellation_cannot_be_swallowed_by_except_exception(engine):
    # given workflow code that catches every Exception around its steps
    ran = []
    swallowed = []

    @workflow(id="unit-replay-cancel-swallow")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("first", ran.append, "first")
        engine.execution.status = "cancelled"
        try:
            ctx.step.run("second", ran.append, "second")
        except Exception as exc:
            swallowed.append(exc)
        ctx.step.run("third", ran.append, "third")

    # when it runs
    outcome = engine.run(flow)

    # then the cancellation still stops it
    assert outcome.status == "cancelled"
    assert swallowed == []
    assert ran == ["first"]


def test_cancel_before_a_suspend_registers_nothing(engine):
    # given an execution cancelled just before it would park
    @workflow(id="unit-replay-cancel-suspend")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("first", lambda: 1)
        engine.execution.status = "cancelled"
        ctx.step.suspend("approve")

    # when it runs
    outcome = engine.run(flow)

    # then nobody is asked to decide
    assert outcome.status == "cancelled"
    assert engine.execution.suspensions == {}
    assert engine.execution.status == "cancelled"


def test_cancel_during_the_last_step_does_not_complete_the_execution(engine):
    # given an execution cancelled while its last step runs
    def last() -> str:
        engine.execution.status = "cancelled"
        return "done"

    @workflow(id="unit-replay-cancel-complete")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return ctx.step.run("last", last)

    # when it runs
    outcome = engine.run(flow)

    # then it is reported cancelled and no result is stored
    assert outcome == RunOutcome("cancelled")
    assert engine.execution.status == "cancelled"
    assert engine.execution.result is None
