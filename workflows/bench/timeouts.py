"""Timeout lateness: how long after its deadline a suspension is timed out (and its workflow
has run on), measured over many suspensions on a running stack."""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from workflows import services
from workflows.bench.flows import BENCH_TIMEOUT_WORKFLOW
from workflows.models import Execution, Suspension


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float
    min: float

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        ordered = sorted(values)

        def at(q: float) -> float:
            # nearest rank: the smallest value with at least a fraction q of them at or below
            index = max(0, math.ceil(q * len(ordered) - 1e-9) - 1)
            return round(ordered[index], 1)

        return cls(
            p50=at(0.50),
            p90=at(0.90),
            p99=at(0.99),
            max=round(ordered[-1], 1),
            min=round(ordered[0], 1),
        )


@dataclass(frozen=True)
class LatenessReport:
    run: str
    count: int
    fired: int
    spread_seconds: float
    #: timed_out (decided_at) minus the deadline
    fire_ms: Percentiles
    #: the execution's end (its workflow ran on after the timeout) minus the deadline
    resumed_ms: Percentiles
    #: deadlines that fired before they were due (must be 0)
    early: int
    #: executions the workers parked only after their intended deadline (``lead`` too short
    #: for them): their deadline became "right after the suspend"
    parked_late: int = 0

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def as_text(self) -> str:
        fire, resumed = self.fire_ms, self.resumed_ms
        return (
            f"{self.fired}/{self.count} timeouts fired, deadlines spread over "
            f"{self.spread_seconds:g} s (run {self.run})\n"
            f"  fired after the deadline:  p50 {fire.p50} ms  p90 {fire.p90} ms  "
            f"p99 {fire.p99} ms  max {fire.max} ms  min {fire.min} ms\n"
            f"  workflow done after it:    p50 {resumed.p50} ms  p90 {resumed.p90} ms  "
            f"p99 {resumed.p99} ms  max {resumed.max} ms\n"
            f"  fired early: {self.early}; parked after their intended deadline: "
            f"{self.parked_late}"
        )


PARKED_LATE = timedelta(milliseconds=10)


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


def timeout_lateness_measure(
    *, count: int = 300, spread: float = 10.0, lead: float = 3.0, wait: float = 120.0
) -> LatenessReport:
    """Start ``count`` executions of the bench workflow whose deadlines are spread evenly over
    ``spread`` seconds, the first ``lead`` seconds from now (time for the workers to park them
    all); wait until all have finished; report how late they fired.

    Needs running workers that load ``workflows.bench.flows``, and beat.
    """
    run = uuid.uuid4().hex[:8]
    first = timezone.now() + timedelta(seconds=lead)
    deadlines = [
        first + timedelta(seconds=spread * index / max(count - 1, 1)) for index in range(count)
    ]
    random.Random(run).shuffle(deadlines)
    ids = []
    for at in deadlines:
        execution, _ = services.execution_start(
            workflow_id=BENCH_TIMEOUT_WORKFLOW, payload={"at": at.isoformat(), "run": run}
        )
        ids.append(execution.pk)
    limit = time.monotonic() + lead + spread + wait
    while Execution.objects.filter(pk__in=ids, status__in=Execution.ACTIVE).exists():
        if time.monotonic() > limit:
            break
        time.sleep(0.2)
    rows = list(
        Suspension.objects.filter(execution_id__in=ids, status=Suspension.Status.TIMED_OUT)
        .select_related("execution")
        .only("expires_at", "decided_at", "execution__finished_at", "execution__payload")
    )
    fire = [_ms(s.decided_at, s.expires_at) for s in rows if s.decided_at and s.expires_at]
    resumed = [
        _ms(s.execution.finished_at, s.expires_at)
        for s in rows
        if s.execution.finished_at and s.expires_at
    ]
    if not fire:
        raise RuntimeError(f"no timeout fired within {wait} s: are workers and beat running?")
    parked_late = sum(
        1
        for s in rows
        if s.expires_at
        and s.expires_at > datetime.fromisoformat(s.execution.payload["at"]) + PARKED_LATE
    )
    return LatenessReport(
        run=run,
        count=count,
        fired=len(fire),
        spread_seconds=spread,
        fire_ms=Percentiles.of(fire),
        resumed_ms=Percentiles.of(resumed or [0.0]),
        early=sum(1 for value in fire if value < 0),
        parked_late=parked_late,
    )


def warm_up(*, timeout: float = 60.0) -> float:
    """Run one short timeout end to end (workers consume, eta messages fire); seconds taken."""
    started = time.monotonic()
    execution, _ = services.execution_start(
        workflow_id=BENCH_TIMEOUT_WORKFLOW, payload={"timeout": 0.2, "run": "warm-up"}
    )
    limit = started + timeout
    while Execution.objects.filter(pk=execution.pk, status__in=Execution.ACTIVE).exists():
        if time.monotonic() > limit:
            raise RuntimeError(
                f"the warm-up execution did not finish in {timeout} s: are workers (loading "
                "workflows.bench.flows) and beat running?"
            )
        time.sleep(0.1)
    return time.monotonic() - started
