"""Fine-tuning benchmark on real public data with the defaults only, through the CLI.

Runs `python -m healthmon train` with no knobs but the data and its columns on Symptom2Disease
and Medical Abstracts from the shared data folder, and prints one table: test accuracy,
macro-F1, ECE before/after calibration with bootstrap intervals, the model before fine-tuning,
what the search chose, what stopped the run, whole-run wall time and peak memory. Published
anchors are printed beside them, and the CPU flags above them (compare only within one run).
CHIP-CTC (Chinese) waits for a Chinese base model and is listed as not run.

    python benchmarks/train_bench.py                                  # defaults, every dataset
    python benchmarks/train_bench.py --datasets symptom2disease --modes full lora head
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    # name: (relative file, text column, label column, headline metric, target, published anchor)
    "symptom2disease": ("symptom2disease/Symptom2Disease.csv", "text", "label", "accuracy", 0.97,
                        "fine-tuned BERT-base 0.983 (random split with duplicates)"),
    "medical-abstracts": ("medical-abstracts/medical_tc_test.csv", "medical_abstract", "condition_label",
                          "macro_f1", 0.64, "hybrid BioMedBERT 0.638 (trained on the 11.5k corpus)"),
}
NOT_RUN = {"cblue-chip-ctc": "needs a Chinese base model (issue 34); the bundled all-MiniLM-L6-v2 is English-only"}


def cpu_flags() -> str:
    """The SIMD flags that change CPU speed figures (AVX-512, AMX, bf16)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
    return " ".join(wanted) or "no AVX2/AVX-512"


def run(dataset: str, mode: str | None, shared: Path, out_root: Path, extra: list[str]) -> dict:
    rel, text_col, label_col, *_ = DATASETS[dataset]
    name = f"{dataset}-{mode or 'default'}"
    cmd = [sys.executable, "-m", "healthmon", "train", "--data", str(shared / rel),
           "--text-column", text_col, "--label-column", label_col, *(["--mode", mode] if mode else []),
           "--out", str(out_root / name), "--no-progress", *extra]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HEALTHMON_DATA_DIR": str(out_root)})
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    metrics["run_wall_s"] = round(time.monotonic() - started, 1)
    return metrics


def _interval(pair: list | None) -> str:
    return f" [{pair[0]:.3f}, {pair[1]:.3f}]" if pair else ""


def _search(m: dict) -> str:
    s = m.get("search") or {}
    if not s.get("ran"):
        return "off"
    trials = s.get("trials", [])
    pruned = sum(t["state"] == "pruned" for t in trials)
    c = s.get("chosen", {})
    return (f"{len(trials)} trials ({pruned} pruned, {s.get('wall_s', 0):.0f} s): lr {c.get('learning_rate', 0):.1e}, "
            f"{c.get('head_init')} head, {c.get('class_weight')} weights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--modes", nargs="+", default=[None], choices=["full", "lora", "head"],
                        help="also pass --mode (default: none, the defaults only)")
    parser.add_argument("--shared", default=os.environ.get("HEALTHMON_SHARED_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--extra", default="", help="extra train flags, e.g. '--search off'")
    args = parser.parse_args()
    shared = Path(args.shared)
    if not shared.is_dir():
        raise SystemExit(f"shared data folder {shared} not found: set --shared or HEALTHMON_SHARED_DATA_DIR")
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {os.cpu_count()} cores; flags: {cpu_flags()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="healthmon-bench-") as tmp:
        for dataset in args.datasets:
            for mode in args.modes:
                metrics = run(dataset, mode, shared, Path(tmp), args.extra.split())
                (results_dir / f"train-{dataset}-{mode or 'default'}.json").write_text(json.dumps(metrics, indent=2))
                rows.append((dataset, mode or "default", metrics))
                print(json.dumps({"dataset": dataset, "mode": mode, "test": {k: metrics["test"][k] for k in ("accuracy", "macro_f1")}}), file=sys.stderr, flush=True)
    print("| dataset | mode | test acc | test macro-F1 | target | ECE raw → calibrated (95% CI), T | before FT acc / F1 "
          "| search | stopped by | epochs run / planned | run wall s | peak RSS MB | anchor |")
    print("|---" * 13 + "|")
    for dataset, mode, m in rows:
        _, _, _, metric, target, anchor = DATASETS[dataset]
        t, b, tr = m["test"], m["before_finetune"], m["train"]
        ok = "met" if t[metric] >= target else "MISSED"
        print(f"| {dataset} | {mode} | {t['accuracy']:.3f} | {t['macro_f1']:.3f} | {metric} ≥ {target} {ok} "
              f"| {t['ece_uncalibrated']:.3f}{_interval(t.get('ece_uncalibrated_interval'))} → {t['ece']:.3f}"
              f"{_interval(t.get('ece_interval'))}, T {m['temperature']:.2f} "
              f"| {b['accuracy']:.3f} / {b['macro_f1']:.3f} | {_search(m)} | {tr.get('stopped_by', '')} "
              f"| {tr['epochs_run']:.1f} / {tr['epochs_budget']:.1f} | {m['run_wall_s']:.0f} | {tr['peak_rss_mb']:.0f} "
              f"| {anchor} |")
    for dataset, why in NOT_RUN.items():
        print(f"| {dataset} | not run: {why} |" + " |" * 11)


if __name__ == "__main__":
    main()
