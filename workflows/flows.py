"""Demo workflows shipped with Polos: the seed's charge approval and multi-stage approval."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from workflows import SuspendTimeout, WorkflowContext, workflow


class ChargeRequest(BaseModel):
    customer_id: str = Field(min_length=1)
    amount: float = Field(gt=0)
    currency: str = "USD"
    description: str = ""


def validate_charge(request: dict[str, Any]) -> dict[str, Any]:
    if request["amount"] > 1_000_000:
        raise ValueError("amount exceeds the 1,000,000 limit")
    return {"valid": True, "risk": "high" if request["amount"] > 1000 else "low"}


def charge(request: dict[str, Any], charge_id: str) -> dict[str, Any]:
    # A real integration would call the payment provider with charge_id as idempotency key.
    return {"charge_id": charge_id, "amount": request["amount"], "currency": request["currency"]}


def confirm(charge_result: dict[str, Any]) -> dict[str, Any]:
    return {"confirmed": True, "charge_id": charge_result["charge_id"]}


DECISION_FORM = {
    "title": "Approve this charge?",
    "description": "Charges above 1,000 need a human decision.",
    "fields": [
        {"name": "approved", "type": "boolean", "label": "Approve the charge", "required": False},
        {"name": "comment", "type": "textarea", "label": "Comment", "required": False},
    ],
}


@workflow(id="charge-customer", description="Charge a customer; amounts over 1,000 need approval")
def charge_customer(ctx: WorkflowContext, payload: ChargeRequest) -> dict[str, Any]:
    request = payload.model_dump()
    ctx.step.run("validate_charge", validate_charge, request)
    if payload.amount > 1000:
        try:
            resume = ctx.step.suspend(
                "high_value_approval",
                data={
                    "customer_id": payload.customer_id,
                    "amount": payload.amount,
                    "currency": payload.currency,
                    "description": payload.description,
                    "_form": DECISION_FORM,
                },
                timeout=2 * 3600,
            )
        except SuspendTimeout:
            return {"status": "timeout", "customer_id": payload.customer_id}
        if not resume["data"].get("approved"):
            return {"status": "rejected", "comment": resume["data"].get("comment", "")}
    charge_id = str(ctx.step.uuid("charge_id"))
    result = ctx.step.run("charge", charge, request, charge_id)
    ctx.step.run("confirm", confirm, result)
    return {"status": "charged", "charge_id": charge_id, "amount": payload.amount}


class PurchaseRequest(BaseModel):
    item: str = Field(min_length=1)
    amount: float = Field(gt=0)
    requester: str = ""


def execute_purchase(request: dict[str, Any]) -> dict[str, Any]:
    return {"ordered": request["item"], "amount": request["amount"]}


@workflow(
    id="multi-stage-approval",
    description="Manager approval, then finance approval above 10,000, then the purchase",
)
def multi_stage_approval(ctx: WorkflowContext, payload: PurchaseRequest) -> dict[str, Any]:
    request = payload.model_dump()
    manager = ctx.step.suspend(
        "manager_approval",
        data={"stage": "manager", **request},
        timeout=24 * 3600,
    )
    if not manager["data"].get("approved"):
        return {"status": "rejected_by_manager", "comment": manager["data"].get("comment", "")}
    if payload.amount > 10_000:
        finance = ctx.step.suspend(
            "finance_approval",
            data={
                "stage": "finance",
                "manager_comment": manager["data"].get("comment", ""),
                **request,
            },
            timeout=48 * 3600,
        )
        if not finance["data"].get("approved"):
            return {"status": "rejected_by_finance", "comment": finance["data"].get("comment", "")}
    purchase = ctx.step.run("execute_purchase", execute_purchase, request)
    return {"status": "executed", **purchase}


class DeletionRequest(BaseModel):
    dataset: str = Field(min_length=1)
    rows: int = Field(ge=0)


@workflow(
    id="data-deletion",
    description="Delete a dataset after approval; the approval times out after 2 minutes",
)
def data_deletion(ctx: WorkflowContext, payload: DeletionRequest) -> dict[str, Any]:
    decision = ctx.step.suspend(
        "deletion_approval",
        data={"dataset": payload.dataset, "rows": payload.rows},
        timeout=120,
        default={"approved": False, "comment": "No decision within 2 minutes"},
    )
    if decision["event_type"] == "timeout":
        return {"status": "timeout", "dataset": payload.dataset}
    if not decision["data"].get("approved"):
        return {"status": "rejected", "dataset": payload.dataset}
    return {"status": "deleted", "dataset": payload.dataset, "rows": payload.rows}
