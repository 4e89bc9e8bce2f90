"""Benchmark harness: time both sides of a comparison in one run, print the ratio, keep the result."""
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def timings(function, repeat: int) -> list[float]:
    """`repeat` wall-clock timings of `function()` (seconds), in the order they ran."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def best_of(function, repeat: int = 3) -> float:
    """The fastest of `repeat` wall-clock timings of `function()` (seconds)."""
    return min(timings(function, repeat))


def report(name: str, rows: list[dict], ratio_label: str, ratio: float, other_ratios: dict | None = None) -> None:
    """Print a table of measurements and the headline ratio; save them, and any other ratios, under bench/results/."""
    columns = list(rows[0])
    widths = [max(len(column), *(len(_cell(row[column])) for row in rows)) for column in columns]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    for row in rows:
        print("  ".join(_cell(row[column]).ljust(width) for column, width in zip(columns, widths)))
    for label, other in (other_ratios or {}).items():
        print(f"{label}: {other:.2f}")
    print(f"{ratio_label}: {ratio:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"rows": rows, **(other_ratios or {}), ratio_label: ratio, "machine": platform.platform(),
         "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        indent=1))


def _cell(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
