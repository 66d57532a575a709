"""Workflows for the console's tests: one per kind of decision form (workers import this
module through POLOS_WORKFLOW_MODULES)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from workflows import WorkflowContext, workflow

EXPENSE_FORM = {
    "title": "Review this expense",
    "description": "Check the receipt before you decide.",
    "fields": [
        {"name": "approved", "type": "boolean", "label": "Approve the expense", "required": True},
        {"name": "cost_center", "type": "text", "label": "Cost center", "required": True},
        {"name": "amount", "type": "number", "label": "Amount to reimburse", "required": True},
        {
            "name": "category",
            "type": "select",
            "label": "Category",
            "required": True,
            "options": [
                {"value": "travel", "label": "Travel"},
                {"value": "meals", "label": "Meals"},
                {"value": "equipment", "label": "Equipment"},
            ],
        },
        {"name": "urgent", "type": "boolean", "label": "Pay out urgently", "default": False},
        {
            "name": "note",
            "type": "textarea",
            "label": "Note for the requester",
            "description": "Shown to the requester with the outcome.",
        },
    ],
}


@workflow(id="console-expense", description="An expense reviewed through a _form")
def expense(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    decision = ctx.step.suspend(
        "expense_review",
        data={**payload, "_form": EXPENSE_FORM},
        timeout=3600,
    )
    return {"decision": decision["data"], "decided_by": decision["decided_by"]}


class RefundDecision(BaseModel):
    approved: bool
    refund_amount: float = Field(ge=0, title="Refund amount")
    reason: str = Field(min_length=3)
    channel: Literal["card", "bank", "voucher"] = "card"


@workflow(id="console-refund", description="A refund decided through a pydantic schema")
def refund(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    decision = ctx.step.suspend(
        "refund_decision", data={"order": payload}, timeout=600, schema=RefundDecision
    )
    return {"decision": decision["data"]}


@workflow(id="console-simple", description="Plain approve or reject")
def simple(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    decision = ctx.step.suspend("sign_off", data={"summary": payload.get("summary", "")})
    return {"approved": decision["data"].get("approved"), "by": decision["decided_by"]}
