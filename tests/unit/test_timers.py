"""The timers' rules that need no database: how far ahead deadlines are armed, and the
lateness report's percentiles."""

from __future__ import annotations

import pytest
from django.test.utils import override_settings

from workflows import timers
from workflows.bench.timeouts import Percentiles


@pytest.mark.parametrize(
    ("interval", "lookahead"), [(1.0, 2.0), (0.5, 1.0), (10.0, 20.0), (0.0, 2.0), (0.01, 0.2)]
)
def test_each_sweep_arms_two_intervals_ahead(interval, lookahead):
    with override_settings(POLOS_SWEEP_INTERVAL=interval):
        assert timers.arming_lookahead() == pytest.approx(lookahead)


@pytest.mark.parametrize(
    ("horizon", "visibility", "expected"),
    [(300, 3600, 300), (300, None, 300), (900, 600, 300), (0.5, None, 2.0)],
)
def test_the_horizon_stays_within_the_visibility_timeout_and_covers_the_look_ahead(
    horizon, visibility, expected
):
    options = {"visibility_timeout": visibility} if visibility else {}
    with override_settings(POLOS_TIMER_HORIZON=horizon, CELERY_BROKER_TRANSPORT_OPTIONS=options):
        assert timers.timer_horizon() == expected


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100 ms

    stats = Percentiles.of(values)

    assert (stats.p50, stats.p90, stats.p99, stats.max, stats.min) == (50, 90, 99, 100, 1)
    assert Percentiles.of([7.0]).p99 == 7.0
