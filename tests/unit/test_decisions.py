"""Decision schemas: the ``_form`` convention, a pydantic ``schema_ref``, plain approve/reject.
``validate_decision`` is what every way of deciding goes through before anything is consumed."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from workflows.engine.decisions import DecisionInvalid, form_of, validate_decision
from workflows.engine.exceptions import WorkflowError

pytestmark = pytest.mark.unit


class RefundDecision(BaseModel):
    approved: bool
    amount: int = Field(ge=0)
    note: str = ""


class Stages:
    class Choice(BaseModel):
        route: Literal["fast", "slow"]


NOT_A_MODEL = {"approved": bool}

REFUND_FORM: dict[str, Any] = {
    "title": "Approve the refund?",
    "description": "Refunds over 100 need a human.",
    "fields": [
        {"name": "approved", "type": "boolean", "required": True},
        {"name": "amount", "type": "number", "required": True},
        {"name": "reason", "type": "select", "options": ["damaged", {"value": "late"}]},
        {"name": "notify_customer", "type": "boolean", "default": True},
        {"name": "comment", "type": "textarea", "default": "none"},
        {"name": "ticket", "type": "text"},
    ],
}


def ref(model: type[BaseModel]) -> str:
    """What ``ctx.step.suspend(..., schema=model)`` records."""
    return f"{model.__module__}:{model.__qualname__}"


def decide_form(decision: Any, form: dict[str, Any] = REFUND_FORM) -> dict[str, Any]:
    return validate_decision(suspend_data={"_form": form}, schema_ref="", decision=decision)


def errors_of(caught: pytest.ExceptionInfo[DecisionInvalid]) -> dict[str, str]:
    return {error["field"]: error["message"] for error in caught.value.errors}


# -- parsing _form --------------------------------------------------------------------------------


def test_suspend_data_without_a_form_has_no_form():
    # given suspend data without _form, when parsed, then there is no form
    assert form_of({"amount": 10}) is None


def test_a_form_is_parsed_with_labels_and_options_normalised():
    # given a form with a select (options as strings and as dicts) and unlabelled fields
    form = form_of(
        {
            "_form": {
                "title": "Ship it?",
                "fields": [
                    {"name": "ship_by", "type": "select", "options": ["air", {"value": "sea"}]},
                    {"name": "approved", "type": "boolean", "label": "Go ahead", "required": 1},
                    {"name": "remarks"},
                ],
            }
        }
    )

    # when parsed, then labels default from names, options have value and label, text is default
    assert form is not None
    assert form.title == "Ship it?"
    assert form.description == ""
    ship_by, approved, remarks = form.fields
    assert ship_by.label == "Ship by"
    assert ship_by.options == [
        {"value": "air", "label": "air"},
        {"value": "sea", "label": "sea"},
    ]
    assert ship_by.option_values == ["air", "sea"]
    assert approved.label == "Go ahead"
    assert approved.required is True
    assert remarks.type == "text"
    assert remarks.required is False


@pytest.mark.parametrize(
    ("raw_form", "message"),
    [
        (["not", "an", "object"], "_form must be an object"),
        ({"fields": {"name": "x"}}, "_form must be an object with a list of fields"),
        ({"fields": [{"type": "text"}]}, "field #0 needs a name"),
        ({"fields": ["approved"]}, "field #0 needs a name"),
        ({"fields": [{"name": "when", "type": "date"}]}, "unknown type 'date'"),
        ({"fields": [{"name": "pick", "type": "select"}]}, "'pick' needs options"),
        ({"fields": [{"name": "pick", "type": "select", "options": []}]}, "'pick' needs options"),
        ({"fields": [{"name": "pick", "type": "select", "options": "ab"}]}, "must be a list"),
    ],
    ids=[
        "form-not-object",
        "fields-not-list",
        "no-name",
        "field-not-object",
        "bad-type",
        "select-without-options",
        "select-empty-options",
        "options-not-list",
    ],
)
def test_a_malformed_form_is_refused(raw_form, message):
    # given a malformed _form, when parsed, then it is refused saying what is wrong
    with pytest.raises(WorkflowError, match=message):
        form_of({"_form": raw_form})


# -- validating against _form ---------------------------------------------------------------------


def test_a_valid_form_decision_is_converted_and_defaults_filled():
    # given a decision as a browser form posts it (strings, unchecked boxes absent)
    decision = {"approved": "on", "amount": "12.50", "reason": "late", "ticket": 1234}

    # when validated
    cleaned = decide_form(decision)

    # then values have their field's type and blank optional fields get their defaults
    assert cleaned == {
        "approved": True,
        "amount": 12.5,
        "reason": "late",
        "notify_customer": True,
        "comment": "none",
        "ticket": "1234",
    }


def test_required_fields_must_be_given():
    # given a decision leaving required fields out or blank
    with pytest.raises(DecisionInvalid) as caught:
        decide_form({"amount": "   "})

    # then each missing field is reported, and only those
    assert errors_of(caught) == {
        "approved": "This field is required.",
        "amount": "This field is required.",
    }


def test_every_wrong_field_is_reported_with_its_own_message():
    # given a decision with several wrong values
    with pytest.raises(DecisionInvalid) as caught:
        decide_form({"approved": "maybe", "amount": "twelve", "reason": "lost", "ticket": ["T-1"]})

    # then all of them are reported at once, each with a message for a person
    assert errors_of(caught) == {
        "approved": "Choose yes or no.",
        "amount": "Enter a number.",
        "reason": "Choose one of: damaged, late.",
        "ticket": "Enter text.",
    }
    assert all(set(error) == {"field", "message"} for error in caught.value.errors)
    assert "approved: Choose yes or no." in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("42", 42), ("2.50", 2.5), (" 7 ", 7), (3, 3), (0.25, 0.25), ("-1e3", -1000)],
)
def test_number_fields_accept_numbers_and_numeric_text(given, expected):
    # given a number field, when given this value, then it is stored as a number
    cleaned = decide_form({"approved": True, "amount": given})
    assert cleaned["amount"] == expected
    assert type(cleaned["amount"]) is type(expected)


@pytest.mark.parametrize("given", [True, "12 EUR", "nan", "inf", float("nan"), float("inf")])
def test_number_fields_refuse_what_is_not_a_finite_number(given):
    # given a number field, when given this value, then it is refused
    with pytest.raises(DecisionInvalid) as caught:
        decide_form({"approved": True, "amount": given})
    assert errors_of(caught) == {"amount": "Enter a number."}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (True, True),
        ("true", True),
        ("on", True),
        ("1", True),
        ("YES", True),
        (False, False),
        ("false", False),
        ("off", False),
        ("0", False),
        ("no", False),
    ],
)
def test_boolean_fields_accept_the_usual_spellings(given, expected):
    # given a boolean field, when given this value, then it is stored as a boolean
    assert decide_form({"approved": given, "amount": 1})["approved"] is expected


def test_an_optional_boolean_left_blank_is_false_or_its_default():
    # given optional booleans with and without a default, left out (an unchecked box)
    form = {
        "fields": [
            {"name": "urgent", "type": "boolean"},
            {"name": "notify", "type": "boolean", "default": True},
        ]
    }

    # when validated, then they take False and their default
    assert decide_form({}, form) == {"urgent": False, "notify": True}


def test_a_select_accepts_only_its_options():
    # given a select field
    form = {"fields": [{"name": "route", "type": "select", "options": ["fast", "slow"]}]}

    # when given one of its options, then it is kept; otherwise refused listing the options
    assert decide_form({"route": "slow"}, form) == {"route": "slow"}
    with pytest.raises(DecisionInvalid) as caught:
        decide_form({"route": "teleport"}, form)
    assert errors_of(caught) == {"route": "Choose one of: fast, slow."}


# -- validating against a pydantic schema_ref ------------------------------------------------------


def test_a_decision_matching_the_schema_is_returned_as_its_json():
    # given a suspension whose decision schema is a pydantic model
    cleaned = validate_decision(
        suspend_data={}, schema_ref=ref(RefundDecision), decision={"approved": True, "amount": "5"}
    )

    # then the decision is validated, converted and completed with defaults
    assert cleaned == {"approved": True, "amount": 5, "note": ""}


def test_a_decision_not_matching_the_schema_is_refused_per_field():
    # given a decision breaking the schema in two places
    with pytest.raises(DecisionInvalid) as caught:
        validate_decision(
            suspend_data={},
            schema_ref=ref(RefundDecision),
            decision={"approved": "perhaps", "amount": -1},
        )

    # then each field is reported with pydantic's message
    errors = errors_of(caught)
    assert set(errors) == {"approved", "amount"}
    assert "greater than or equal to 0" in errors["amount"]
    assert all(set(error) == {"field", "message"} for error in caught.value.errors)


def test_a_nested_model_is_found_by_its_qualified_name():
    # given a schema_ref to a model nested in a class
    assert ref(Stages.Choice).endswith(":Stages.Choice")

    # when decisions are validated against it, then it is the one applied
    assert validate_decision(
        suspend_data={}, schema_ref=ref(Stages.Choice), decision={"route": "fast"}
    ) == {"route": "fast"}
    with pytest.raises(DecisionInvalid):
        validate_decision(suspend_data={}, schema_ref=ref(Stages.Choice), decision={"route": "x"})


def test_the_schema_wins_over_the_form():
    # given suspend data with a _form requiring a comment, and a schema that does not
    suspend_data = {"_form": {"fields": [{"name": "comment", "required": True}]}}

    # when a decision fits the schema but not the form, then the schema decides
    cleaned = validate_decision(
        suspend_data=suspend_data,
        schema_ref=ref(RefundDecision),
        decision={"approved": False, "amount": 0},
    )
    assert cleaned == {"approved": False, "amount": 0, "note": ""}


def test_a_schema_ref_that_is_not_a_model_is_an_error():
    # given a schema_ref naming something that is not a pydantic model
    with pytest.raises(WorkflowError, match="is not a pydantic model"):
        validate_decision(
            suspend_data={}, schema_ref=f"{__name__}:NOT_A_MODEL", decision={"approved": True}
        )


# -- the default approve / reject ------------------------------------------------------------------


def test_a_plain_approval_is_accepted_as_given():
    # given a suspension without schema or form
    decision = {"approved": False, "comment": "budget is frozen", "extra": [1]}

    # when decided, then the decision is kept as it is
    assert validate_decision(suspend_data={"amount": 5}, schema_ref="", decision=decision) == (
        decision
    )


@pytest.mark.parametrize("approved", ["yes", 1, None, "true"])
def test_approved_must_be_a_boolean(approved):
    # given a plain approval whose "approved" is not true or false, then it is refused
    with pytest.raises(DecisionInvalid) as caught:
        validate_decision(suspend_data={}, schema_ref="", decision={"approved": approved})
    assert errors_of(caught) == {"approved": "Must be true or false."}


def test_a_comment_must_be_text():
    with pytest.raises(DecisionInvalid) as caught:
        validate_decision(suspend_data={}, schema_ref="", decision={"approved": True, "comment": 5})
    assert errors_of(caught) == {"comment": "Must be text."}


@pytest.mark.parametrize("schema_ref", ["", ref(RefundDecision)], ids=["plain", "schema"])
@pytest.mark.parametrize("decision", [["approve"], "yes", None, True])
def test_a_decision_must_be_an_object(schema_ref, decision):
    # given a decision that is not a JSON object, whatever the schema, then it is refused
    with pytest.raises(DecisionInvalid) as caught:
        validate_decision(suspend_data={}, schema_ref=schema_ref, decision=decision)
    assert errors_of(caught) == {"data": "The decision must be a JSON object."}
