"""Step keys, failed steps and retries, determinism helpers, payload validation and durable
sleeps of the engine, driven through ``run_workflow`` on the in-memory store (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel, Field

from tests.support.engine import Engine
from workflows import StepExecutionError, WorkflowContext, workflow
from workflows.engine.context import StepRunner
from workflows.engine.exceptions import PayloadInvalid
from workflows.engine.registry import WorkflowSpec, registry
from workflows.engine.runner import RunOutcome

pytestmark = pytest.mark.unit


@pytest.fixture
def engine() -> Engine:
    return Engine()


class OrderLine(BaseModel):
    sku: str
    qty: int = Field(gt=0)


class Order(BaseModel):
    customer_id: str = Field(min_length=1)
    amount: float = Field(gt=0)
    currency: str = "USD"
    lines: list[OrderLine] = []


# -- step keys ------------------------------------------------------------------------------------


def test_duplicate_step_key_fails_with_a_clear_message(engine):
    # given a loop that reuses one key
    charged = []

    @workflow(id="unit-steps-duplicate-key")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        for item in ["a", "b"]:
            ctx.step.run("charge", charged.append, item)

    # when it runs
    outcome = engine.run(flow)

    # then the second use is refused before it runs, explaining how to fix it
    assert outcome.status == "failed"
    assert outcome.error["type"] == "DuplicateStepKey"
    assert "'charge' is used twice" in outcome.error["message"]
    assert "'unit-steps-duplicate-key'" in outcome.error["message"]
    assert charged == ["a"]


def test_a_key_is_unique_across_kinds_of_step(engine):
    # given a uuid step and a run step sharing a key
    @workflow(id="unit-steps-duplicate-across-kinds")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.uuid("order")
        ctx.step.run("order", lambda: 1)

    # when it runs
    outcome = engine.run(flow)

    # then the second use is refused
    assert outcome.error["type"] == "DuplicateStepKey"


@pytest.mark.parametrize(
    "key",
    ["", "   ", None, 42, "approve/manager", "k" * 201],
    ids=["empty", "blank", "none", "int", "slash", "too-long"],
)
def test_invalid_step_keys_are_refused_before_the_step_runs(engine, key):
    # given a step with an unusable key
    ran = []

    @workflow(id="unit-steps-invalid-key")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run(key, ran.append, "ran")

    # when it runs
    outcome = engine.run(flow)

    # then the key is refused and the step's function never ran
    assert outcome.status == "failed"
    assert outcome.error["type"] == "InvalidStepKey"
    assert ran == []
    assert engine.execution.steps == {}


def test_a_key_of_exactly_the_maximum_length_is_accepted(engine):
    # given a 200-character key
    @workflow(id="unit-steps-longest-key")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return ctx.step.run("k" * 200, lambda: "ok")

    # when it runs, then it completes
    assert engine.run(flow) == RunOutcome("completed", result="ok")


def test_a_suspend_key_with_a_slash_is_refused_before_parking(engine):
    # given a suspension whose key would break its topic "{step_key}/{execution_id}"
    @workflow(id="unit-steps-suspend-slash")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.suspend("manager/approve")

    # when it runs
    outcome = engine.run(flow)

    # then nothing is parked
    assert outcome.error["type"] == "InvalidStepKey"
    assert "'/'" in outcome.error["message"]
    assert engine.execution.suspensions == {}


def test_a_run_step_replayed_as_a_suspend_is_a_non_deterministic_replay(engine):
    # given an execution parked after a run step "check"
    code = {"version": 1}

    @workflow(id="unit-steps-nondeterministic")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        if code["version"] == 1:
            ctx.step.run("check", lambda: "ok")
        else:
            ctx.step.suspend("check")
        ctx.step.suspend("approve")
        return "done"

    engine.run(flow)

    # when the code is deployed with "check" turned into a suspension and the run is replayed
    code["version"] = 2
    engine.resume("approve", {})
    outcome = engine.run(flow)

    # then the replay is refused, saying what changed
    assert outcome.status == "failed"
    assert outcome.error["type"] == "NonDeterministicReplay"
    assert "'check'" in outcome.error["message"]
    assert "'run'" in outcome.error["message"]
    assert "'suspend'" in outcome.error["message"]


# -- failed steps ---------------------------------------------------------------------------------


def test_a_failing_step_is_retried_with_exponential_backoff(engine):
    # given a step that fails three times, then succeeds
    attempts = []

    def call_provider() -> str:
        attempts.append(1)
        if len(attempts) <= 3:
            raise ConnectionError("provider down")
        return "ok"

    @workflow(id="unit-steps-retry-backoff")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return ctx.step.run("call", call_provider, max_retries=3)

    # when it runs
    outcome = engine.run(flow)

    # then it succeeded on the fourth attempt, waiting twice as long before each retry
    assert outcome == RunOutcome("completed", result="ok")
    assert len(attempts) == 4
    assert len(engine.sleeps) == 3
    assert engine.sleeps[0] == pytest.approx(StepRunner.retry_base_delay)
    assert all(later == pytest.approx(2 * earlier) for earlier, later in pairwise(engine.sleeps))


def test_retry_delays_are_capped(engine):
    # given a step that always fails, with many retries
    @workflow(id="unit-steps-retry-cap")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("call", lambda: 1 / 0, max_retries=10)

    # when it runs
    engine.run(flow)

    # then the delays grow but never beyond the cap
    assert len(engine.sleeps) == 10
    assert engine.sleeps == sorted(engine.sleeps)
    assert max(engine.sleeps) == StepRunner.retry_max_delay


def test_max_retries_zero_tries_once_without_sleeping(engine):
    # given a failing step that must not be retried
    attempts = []

    def send_email() -> None:
        attempts.append(1)
        raise RuntimeError("smtp refused")

    @workflow(id="unit-steps-no-retry")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("email", send_email, max_retries=0)

    # when it runs
    engine.run(flow)

    # then it was tried once
    assert attempts == [1]
    assert engine.sleeps == []
    assert engine.execution.steps["email"].error["attempts"] == 1


def test_a_step_that_still_fails_is_recorded_and_raises_again_on_replay_without_rerunning(engine):
    # given a step that always fails, caught by the workflow, then a suspension
    attempts = []
    raised: list[StepExecutionError] = []

    def charge_card() -> None:
        attempts.append(1)
        raise RuntimeError("card declined")

    @workflow(id="unit-steps-failed-replay")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        try:
            ctx.step.run("charge", charge_card, max_retries=1)
        except StepExecutionError as exc:
            raised.append(exc)
        ctx.step.suspend("review")
        return "reviewed"

    # when it runs
    engine.run(flow)

    # then the step is recorded failed with its error, after its retries
    record = engine.execution.steps["charge"]
    assert record.status == "failed"
    assert record.error["type"] == "RuntimeError"
    assert record.error["message"] == "card declined"
    assert record.error["attempts"] == 2
    assert len(attempts) == 2
    error = raised[0]
    assert error.step_key == "charge"
    assert error.error_type == "RuntimeError"
    assert "'charge'" in str(error)
    assert "card declined" in str(error)

    # when the execution is replayed after the review
    engine.resume("review", {})
    outcome = engine.run(flow)

    # then the step raised again from its record, and was not run again
    assert outcome == RunOutcome("completed", result="reviewed")
    assert len(attempts) == 2
    assert len(raised) == 2
    assert raised[1].step_key == "charge"
    assert raised[1].error_type == "RuntimeError"
    assert str(raised[1]) == str(raised[0])


def test_a_workflow_that_catches_a_failed_step_continues(engine):
    # given a workflow with a fallback for a failing step
    @workflow(id="unit-steps-fallback")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        try:
            rate = ctx.step.run("live-rate", lambda: 1 / 0, max_retries=0)
        except StepExecutionError:
            rate = ctx.step.run("cached-rate", lambda: 1.08)
        return {"rate": rate}

    # when it runs
    outcome = engine.run(flow)

    # then it completes on the fallback, and both steps are recorded
    assert outcome == RunOutcome("completed", result={"rate": 1.08})
    assert engine.execution.steps["live-rate"].status == "failed"
    assert engine.execution.steps["cached-rate"].output == 1.08


def test_an_uncaught_failed_step_fails_the_execution(engine):
    # given a workflow that does not handle a failing step
    @workflow(id="unit-steps-failed-uncaught")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("charge", lambda: {}["card"], max_retries=0)

    # when it runs
    outcome = engine.run(flow)

    # then the execution fails with StepExecutionError naming the step and the cause
    assert outcome.status == "failed"
    assert outcome.error["type"] == "StepExecutionError"
    assert "'charge'" in outcome.error["message"]
    assert "KeyError" in outcome.error["message"]
    assert engine.execution.status == "failed"


# -- determinism helpers --------------------------------------------------------------------------


def test_uuid_now_and_random_return_the_same_values_on_replay(engine):
    # given a workflow drawing a uuid, a time and a random number before parking
    seen = []

    @workflow(id="unit-steps-determinism")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        values = (
            ctx.step.uuid("charge-id"),
            ctx.step.uuid("other-id"),
            ctx.step.now("started"),
            ctx.step.random("jitter"),
        )
        seen.append(values)
        ctx.step.suspend("approve")
        return str(values[0])

    # when it runs, is resumed and replays
    before = datetime.now(UTC)
    engine.run(flow)
    after = datetime.now(UTC)
    engine.resume("approve", {})
    outcome = engine.run(flow)

    # then the replay saw exactly the values of the first run
    assert len(seen) == 2
    assert seen[0] == seen[1]
    charge_id, other_id, started, jitter = seen[1]
    assert isinstance(charge_id, UUID)
    assert charge_id != other_id
    assert before <= started <= after
    assert started.tzinfo is not None
    assert 0.0 <= jitter < 1.0
    assert outcome.result == str(charge_id)


# -- payload validation ---------------------------------------------------------------------------


def test_a_pydantic_payload_is_validated_and_reaches_the_workflow_as_the_model(engine):
    # given a workflow whose payload is annotated with a model
    received = []

    @workflow(id="unit-steps-payload-model")
    def flow(ctx: WorkflowContext, payload: Order) -> Any:
        received.append(payload)
        return payload.currency

    spec = registry.get("unit-steps-payload-model")

    # when it is started with a valid JSON payload
    stored = spec.validate_payload({"customer_id": "c-1", "amount": "12.5"})
    outcome = engine.run(flow, {"customer_id": "c-1", "amount": "12.5"})

    # then the stored payload is cleaned (defaults filled) and the function gets the model
    assert spec.payload_model is Order
    assert stored == {"customer_id": "c-1", "amount": 12.5, "currency": "USD", "lines": []}
    assert received == [Order(customer_id="c-1", amount=12.5)]
    assert outcome.result == "USD"


def test_an_invalid_payload_is_refused_with_field_errors():
    # given a workflow with a payload model
    @workflow(id="unit-steps-payload-invalid")
    def flow(ctx: WorkflowContext, payload: Order) -> Any:
        return None

    spec = registry.get("unit-steps-payload-invalid")

    # when it is given a payload with several mistakes
    with pytest.raises(PayloadInvalid) as caught:
        spec.validate_payload({"amount": "lots", "lines": [{"sku": "a", "qty": 0}]})

    # then every mistake is reported as {"field", "message", "type"}, nested paths dotted
    assert caught.value.workflow_id == "unit-steps-payload-invalid"
    errors = {error["field"]: error for error in caught.value.errors}
    assert set(errors) == {"customer_id", "amount", "lines.0.qty"}
    assert all(set(error) == {"field", "message", "type"} for error in caught.value.errors)
    assert errors["customer_id"]["type"] == "missing"
    assert errors["customer_id"]["message"] == "Field required"
    assert errors["amount"]["type"] == "float_parsing"
    assert errors["lines.0.qty"]["type"] == "greater_than"
    assert all(error["message"] for error in caught.value.errors)


def test_a_model_instance_is_accepted_as_payload():
    # given a workflow with a payload model
    @workflow(id="unit-steps-payload-instance")
    def flow(ctx: WorkflowContext, payload: Order) -> Any:
        return None

    # when it is started with an instance of the model, then it is stored as JSON
    stored = registry.get("unit-steps-payload-instance").validate_payload(
        Order(customer_id="c-2", amount=3, lines=[OrderLine(sku="x", qty=2)])
    )
    assert stored == {
        "customer_id": "c-2",
        "amount": 3.0,
        "currency": "USD",
        "lines": [{"sku": "x", "qty": 2}],
    }


def test_a_dict_payload_is_accepted_as_is(engine):
    # given a workflow without a payload model
    @workflow(id="unit-steps-payload-dict")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        return payload

    spec = registry.get("unit-steps-payload-dict")

    # when it is started with a JSON object, or nothing
    outcome = engine.run(flow, {"anything": [1, 2], "goes": None})

    # then the workflow receives the object unchanged, and nothing becomes {}
    assert spec.payload_model is None
    assert outcome.result == {"anything": [1, 2], "goes": None}
    assert spec.validate_payload(None) == {}


@pytest.mark.parametrize("payload", [[1, 2], "text", 5, True], ids=["list", "str", "int", "bool"])
def test_a_payload_that_is_not_an_object_is_refused(payload):
    # given a workflow without a payload model
    spec = WorkflowSpec(id="unit-steps-payload-object", fn=lambda ctx, payload: None)

    # when it is given something that is not a JSON object
    with pytest.raises(PayloadInvalid) as caught:
        spec.validate_payload(payload)

    # then it is refused as such
    assert caught.value.errors == [
        {"field": "payload", "message": "must be a JSON object", "type": "dict_type"}
    ]


# -- wait_for / wait_until ------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [30, timedelta(hours=3)], ids=["seconds", "timedelta"])
def test_wait_for_parks_on_a_sleep_timer_and_continues_when_it_fires(engine, delay):
    # given a durable sleep between two steps
    ran = []

    @workflow(id="unit-steps-wait-for")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.run("before", ran.append, "before")
        ctx.step.wait_for("cool-off", delay)
        ctx.step.run("after", ran.append, "after")
        return "woke"

    # when it runs
    before = datetime.now(UTC)
    outcome = engine.run(flow)
    after = datetime.now(UTC)

    # then it parks on a sleep expiring after the delay, not holding a worker
    span = delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
    assert outcome == RunOutcome("suspended", step_key="cool-off")
    assert engine.execution.status == "waiting"
    request = engine.execution.suspensions["cool-off"]
    assert request.kind == "sleep"
    assert before + span <= request.expires_at <= after + span
    assert ran == ["before"]

    # when the timer fires and the execution is replayed
    engine.store.time_out(engine.execution_id, "cool-off")
    outcome = engine.run(flow)

    # then it continues after the sleep
    assert outcome == RunOutcome("completed", result="woke")
    assert ran == ["before", "after"]


def test_wait_until_a_future_time_parks_until_exactly_then(engine):
    # given a durable sleep until a given instant
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)

    @workflow(id="unit-steps-wait-until-future")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.wait_until("until-tomorrow", when)

    # when it runs
    outcome = engine.run(flow)

    # then the timer expires at that instant
    assert outcome.status == "suspended"
    assert engine.execution.suspensions["until-tomorrow"].expires_at == when


def test_wait_until_a_past_time_returns_at_once(engine):
    # given a durable sleep until an instant already passed
    @workflow(id="unit-steps-wait-until-past")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.wait_until("until-yesterday", datetime.now(UTC) - timedelta(days=1))
        return "went on"

    # when it runs
    outcome = engine.run(flow)

    # then nothing is parked and the sleep is recorded as done
    assert outcome == RunOutcome("completed", result="went on")
    assert engine.execution.suspensions == {}
    assert engine.execution.steps["until-yesterday"].kind == "sleep"
    assert engine.execution.steps["until-yesterday"].status == "completed"


def test_wait_until_refuses_a_naive_datetime(engine):
    # given a sleep until a datetime without a time zone
    @workflow(id="unit-steps-wait-until-naive")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.wait_until("until-noon", datetime(2030, 1, 1, 12, 0))

    # when it runs
    outcome = engine.run(flow)

    # then it fails explaining why, and nothing is parked
    assert outcome.status == "failed"
    assert outcome.error["type"] == "ValueError"
    assert "timezone-aware" in outcome.error["message"]
    assert engine.execution.suspensions == {}


@pytest.mark.parametrize("delay", [0, -1, timedelta(seconds=-5)])
def test_wait_for_refuses_a_non_positive_delay(engine, delay):
    # given a sleep of no time at all
    @workflow(id="unit-steps-wait-for-bad")
    def flow(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
        ctx.step.wait_for("nap", delay)

    # when it runs, then it fails without parking
    outcome = engine.run(flow)
    assert outcome.error["type"] == "ValueError"
    assert engine.execution.suspensions == {}
