"""Fine-tuning benchmark on real public data: full vs LoRA vs head-only, through the CLI.

Runs `python -m healthmon train` with default knobs (only data, columns and --mode) on
Symptom2Disease and Medical Abstracts from the shared data folder, and prints one table:
test accuracy, macro-F1, ECE before/after calibration, the model before fine-tuning,
wall time, samples/s and peak memory. Anchors (published figures) are printed beside them.

    python benchmarks/train_bench.py                       # everything (about 90 min on 2 CPU cores)
    python benchmarks/train_bench.py --datasets symptom2disease --modes lora
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    # name: (relative file, text column, label column, headline metric, target, published anchor)
    "symptom2disease": ("symptom2disease/Symptom2Disease.csv", "text", "label", "accuracy", 0.97,
                        "fine-tuned BERT-base 0.983 (random split with duplicates)"),
    "medical-abstracts": ("medical-abstracts/medical_tc_test.csv", "medical_abstract", "condition_label",
                          "macro_f1", 0.60, "hybrid BioMedBERT 0.638 (trained on the 11.5k corpus)"),
}


def run(dataset: str, mode: str, shared: Path, out_root: Path, extra: list[str]) -> dict:
    rel, text_col, label_col, *_ = DATASETS[dataset]
    cmd = [sys.executable, "-m", "healthmon", "train", "--data", str(shared / rel),
           "--text-column", text_col, "--label-column", label_col, "--mode", mode,
           "--out", str(out_root / f"{dataset}-{mode}"), "--no-progress", *extra]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HEALTHMON_DATA_DIR": str(out_root)})
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--modes", nargs="+", default=["full", "lora", "head"], choices=["full", "lora", "head"])
    parser.add_argument("--shared", default=os.environ.get("HEALTHMON_SHARED_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--extra", default="", help="extra train flags, e.g. '--epochs 4'")
    args = parser.parse_args()
    shared = Path(args.shared)
    if not shared.is_dir():
        raise SystemExit(f"shared data folder {shared} not found: set --shared or HEALTHMON_SHARED_DATA_DIR")
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="healthmon-bench-") as tmp:
        for dataset in args.datasets:
            for mode in args.modes:
                metrics = run(dataset, mode, shared, Path(tmp), args.extra.split())
                (results_dir / f"train-{dataset}-{mode}.json").write_text(json.dumps(metrics, indent=2))
                rows.append((dataset, mode, metrics))
                print(json.dumps({"dataset": dataset, "mode": mode, "test": {k: metrics["test"][k] for k in ("accuracy", "macro_f1")}}), file=sys.stderr, flush=True)
    header = ("| dataset | mode | test acc | test macro-F1 | target | ECE raw → calibrated | before FT acc / F1 "
              "| epochs | wall s | samples/s | peak RSS MB | anchor |")
    print(header)
    print("|---" * 12 + "|")
    for dataset, mode, m in rows:
        _, _, _, metric, target, anchor = DATASETS[dataset]
        t, b, tr = m["test"], m["before_finetune"], m["train"]
        ok = "met" if t[metric] >= target else "MISSED"
        print(f"| {dataset} | {mode} | {t['accuracy']:.3f} | {t['macro_f1']:.3f} | {metric} ≥ {target} {ok} "
              f"| {t['ece_uncalibrated']:.3f} → {t['ece']:.3f} | {b['accuracy']:.3f} / {b['macro_f1']:.3f} "
              f"| {tr['epochs_run']:.1f} | {tr['wall_s']:.0f} | {tr['samples_per_s']:.1f} | {tr['peak_rss_mb']:.0f} | {anchor} |")


if __name__ == "__main__":
    main()
