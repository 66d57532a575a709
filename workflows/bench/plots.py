"""Plots and the median table for ``docs/benchmarks.md`` from ``polos_bench`` output
(matplotlib, a development dependency):

    python -m workflows.bench.plots --samples var/bench/samples.json \\
        --throughput var/bench/throughput-*.jsonl --out docs/img
    python -m workflows.bench.plots --median var/bench/full-*.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from workflows.bench.stats import percentile

LATENCY_SERIES = {
    "latency_decision_to_completed": "decision → completed",
    "latency_start_to_suspended": "start → suspended",
    "push": "suspend commit → browser push",
}


def latency_plot(samples: dict[str, list[float]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for key, label in LATENCY_SERIES.items():
        values = sorted(value * 1000 for value in samples.get(key, []))
        if not values:
            continue
        share = [(index + 1) / len(values) for index in range(len(values))]
        p50 = percentile(values, 0.5)
        axes.step(values, share, where="post", label=f"{label} (p50 {p50:.1f} ms)")
    axes.set_xscale("log")
    axes.set_xlabel("milliseconds (log scale)")
    axes.set_ylabel("share of samples at or below")
    axes.set_ylim(0, 1.01)
    axes.axhline(0.5, color="grey", linewidth=0.5)
    axes.axhline(0.95, color="grey", linewidth=0.5)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title("Latency distribution (2 worker processes, PostgreSQL + Redis)")
    path = out / "bench-latency.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def throughput_plot(results: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_workers: dict[int, list[float]] = {}
    for result in results:
        if result.get("scenario") == "throughput":
            by_workers.setdefault(int(result["workers"]), []).append(float(result["cycles_per_s"]))
    workers = sorted(by_workers)
    medians = [sorted(by_workers[k])[len(by_workers[k]) // 2] for k in workers]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(workers, medians, marker="o", label="measured (median of runs)")
    for count in workers:
        axes.scatter([count] * len(by_workers[count]), by_workers[count], color="grey", s=10)
    axes.axhline(150, color="red", linestyle="--", linewidth=1, label="target 150 /s")
    axes.set_xlabel("worker processes")
    axes.set_ylabel("full cycles per second")
    axes.set_xticks(workers)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title("Throughput against worker count (2 cores)")
    path = out / "bench-throughput.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def medians(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario, the median of each numeric figure over the runs (other values: the
    first run's)."""
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_scenario.setdefault(result["scenario"], []).append(result)
    summary: dict[str, dict[str, Any]] = {}
    for scenario, runs in by_scenario.items():
        merged: dict[str, Any] = {"runs": len(runs)}
        for key, value in runs[0].items():
            values = [run.get(key) for run in runs]
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if numbers and len(numbers) == len(values):
                merged[key] = sorted(numbers)[(len(numbers) - 1) // 2]
                merged[f"{key}__all"] = numbers
            else:
                merged[key] = value
        summary[scenario] = merged
    return summary


def _load(paths: list[Path]) -> list[dict[str, Any]]:
    return [
        json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=Path, nargs="*", default=[], help="--samples files (pooled)"
    )
    parser.add_argument("--throughput", type=Path, nargs="*", default=[], help="--json files")
    parser.add_argument(
        "--median", type=Path, nargs="*", default=[], help="--json files: print the medians"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    if args.median:
        print(json.dumps(medians(_load(args.median)), indent=1))
    if args.samples or args.throughput:
        args.out.mkdir(parents=True, exist_ok=True)
    if args.samples:
        pooled: dict[str, list[float]] = {}
        for path in args.samples:
            for key, values in json.loads(path.read_text()).items():
                pooled.setdefault(key, []).extend(values)
        print(latency_plot(pooled, args.out))
    results = _load(args.throughput)
    if results:
        print(throughput_plot(results, args.out))


if __name__ == "__main__":
    main()
