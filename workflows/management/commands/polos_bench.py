"""``manage.py polos_bench``: measure Polos on this machine (latency, throughput, waiting
approvals, timeouts, browser push, replay) with worker processes it starts itself."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test.utils import override_settings

from workflows.bench.runtime import POOLS
from workflows.bench.scenarios import DEFAULT_N, RUNNERS, SCENARIOS, Bench
from workflows.bench.scratch import scratch_database

#: (scenario, figure, target text, whether a value meets it)
TARGETS: list[tuple[str, str, str, Any]] = [
    ("latency", "decision_to_completed_p50_ms", "<= 5 ms", lambda v: v <= 5),
    ("throughput", "cycles_per_s", ">= 150 /s", lambda v: v >= 150),
    ("throughput", "write_txns_per_cycle", "<= 6", lambda v: v <= 6),
    ("waiting", "worker_threads_per_waiting", "0", lambda v: v == 0),
    ("waiting", "db_bytes_per_waiting", "<= 2048 B", lambda v: v <= 2048),
    ("waiting", "inbox_p95_ms", "<= 50 ms (1,000,000 waiting)", lambda v: v <= 50),
    ("timeouts", "lateness_p99_s", "<= 1 s", lambda v: v <= 1),
    ("push", "push_p95_ms", "<= 50 ms", lambda v: v <= 50),
    ("replay", "constant_queries", "constant", lambda v: v is True),
]


class Command(BaseCommand):
    help = (
        "Benchmark Polos on the configured database server and broker with Celery worker "
        "processes it starts and stops itself; prints a table and writes one flat JSON object "
        "per scenario. Runs in a scratch database (created next to the configured one, "
        "migrated, dropped at the end): the configured database is not written to."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--scenario",
            nargs="+",
            action="extend",
            choices=SCENARIOS,
            metavar="NAME",
            help=f"scenarios to run, in order (default: all of {', '.join(SCENARIOS)})",
        )
        parser.add_argument(
            "--n",
            type=int,
            help="size of every chosen scenario (defaults: "
            + ", ".join(f"{name} {count:,}" for name, count in DEFAULT_N.items())
            + "; replay: finished steps)",
        )
        parser.add_argument(
            "--workers", type=int, default=2, metavar="K", help="worker processes (2)"
        )
        parser.add_argument(
            "--pool",
            choices=POOLS,
            default="solo",
            help="solo: K worker processes; prefork: one worker with K child processes (solo)",
        )
        parser.add_argument("--json", metavar="FILE", help="write one JSON object per line")
        parser.add_argument(
            "--samples", metavar="FILE", help="write the raw latency samples (JSON) for plots"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scenarios: list[str] = options["scenario"] or list(SCENARIOS)
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        if options["n"] is not None and options["n"] < 1:
            raise CommandError("--n must be at least 1")
        if settings.EMBEDDED:
            self.stderr.write(
                "embedded mode (no REDIS_URL): one worker thread on SQLite; the figures are not "
                "the benchmark's (set DATABASE_URL and REDIS_URL)"
            )
        bench = Bench(
            workers=options["workers"],
            pool=options["pool"],
            n=options["n"],
            progress=lambda line: self.stderr.write(line),
        )
        results: list[dict[str, Any]] = []
        json_file = Path(options["json"]) if options["json"] else None
        if json_file is not None:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_text("")
        started = time.monotonic()
        # DEBUG would make this process record every query, which no production process does.
        with override_settings(DEBUG=False), scratch_database() as database:
            self.stderr.write(f"scratch database {database}")
            from workflows.services import workflow_definitions_sync

            workflow_definitions_sync()
            for scenario in scenarios:
                load_before = os.getloadavg()[0]
                result = RUNNERS[scenario](bench)
                # What else ran meanwhile: on a shared machine, the figures' context.
                result["cpus"] = os.cpu_count()
                result["load_1m_before"] = round(load_before, 2)
                result["load_1m_after"] = round(os.getloadavg()[0], 2)
                results.append(result)
                if json_file is not None:
                    with json_file.open("a") as handle:
                        handle.write(json.dumps(result) + "\n")
                self.stdout.write(self._block(result))
        if options["samples"]:
            Path(options["samples"]).write_text(json.dumps(bench.samples))
        self.stdout.write(self._targets(results))
        self.stderr.write(f"done in {time.monotonic() - started:.0f} s")

    @staticmethod
    def _block(result: dict[str, Any]) -> str:
        width = max(len(key) for key in result)
        lines = [f"== {result['scenario']}"]
        lines += [
            f"  {key:<{width}}  {value}" for key, value in result.items() if key != "scenario"
        ]
        return "\n".join(lines)

    @staticmethod
    def _targets(results: list[dict[str, Any]]) -> str:
        by_name = {result["scenario"]: result for result in results}
        rows = [("figure", "target", "measured", "")]
        for scenario, key, target, meets in TARGETS:
            if scenario not in by_name:
                continue
            value = by_name[scenario].get(key)
            verdict = "n/a" if value is None else ("ok" if meets(value) else "MISSED")
            rows.append((f"{scenario}.{key}", target, str(value), verdict))
        if len(rows) == 1:
            return ""
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        out = ["== targets"]
        for row in rows:
            out.append(
                "  "
                + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                + "  "
                + row[3]
            )
        return "\n".join(out)
