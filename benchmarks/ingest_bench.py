"""How the generic vitals CSV reader scales with the file: a wearable's week at one reading a
minute is 10,080 rows, and a reader that does per-row work over the whole column grows with
the square of that.

Times ``read_vitals_csv`` on a synthetic wide CSV of N and 4N rows (heart rate, °F
temperature and a glucose column whose unit is guessed from its values, so every per-column
decision is exercised) and prints the time ratio beside its anchor: 4.0 for a reader linear
in the rows, 16.0 for a quadratic one. The machine is noisy; the ratio is the figure.

    python benchmarks/ingest_bench.py              # 2,500 and 10,000 rows, best of 3
    python benchmarks/ingest_bench.py --rows 10080 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wearable_csv(rows: int) -> bytes:
    start = 1_767_225_600  # 2026-01-01 00:00 UTC: one reading a minute from there
    lines = ["timestamp,patient,pulse,temp_f,glucose"]
    for i in range(rows):
        moment = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start + 60 * i))
        lines.append(f"{moment},p{i % 3},{60 + i % 40},98.{i % 9},5.{i % 9}")
    return ("\n".join(lines) + "\n").encode()


def best_time(data: bytes, repeats: int) -> tuple[float, int]:
    from healthmon.ingest.vitals_csv import read_vitals_csv

    times, values = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        values = len(read_vitals_csv(data, "wearable.csv").frame)
        times.append(time.perf_counter() - started)
    return min(times), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2500, help="the smaller file; the larger has 4x as many")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    small, large = args.rows, 4 * args.rows
    small_s, small_values = best_time(wearable_csv(small), args.repeats)
    large_s, large_values = best_time(wearable_csv(large), args.repeats)
    print(f"{small:,} rows: {small_s:.2f} s ({small_values:,} values, {small / small_s:,.0f} rows/s)")
    print(f"{large:,} rows: {large_s:.2f} s ({large_values:,} values, {large / large_s:,.0f} rows/s)")
    print(f"time ratio for 4x the rows: {large_s / small_s:.1f} (anchor: 4.0 linear, 16.0 quadratic)")


if __name__ == "__main__":
    main()
