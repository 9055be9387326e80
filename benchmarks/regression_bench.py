"""The regression head on a real target: Cleveland heart disease severity (``num``, 0-4) from a note.

Each row of the UCI Cleveland processed data (303 patients, 13 attributes; read from the shared
data folder, never copied into the project) is written as a short note ("63-year-old man with
typical angina; resting blood pressure 145 mm Hg; ..."), with ``num`` as the target. The note
file goes to a temporary folder, and the regression head is trained through the CLI with default
knobs (``python -m healthmon train --task regression``). On the same train / validation / test
split (read back from the version folder), ridge regression is fitted on the numeric features
(one-hot where categorical, median-imputed) and on TF-IDF of the same notes, its alpha picked on
validation. One table: test MAE, RMSE, Spearman and R² of each, always predicting the training
mean, and the head before fine-tuning; the run's wall time and peak RSS; the CPU flags.

    python benchmarks/regression_bench.py [--shared ../shared/data] [--extra "--mode full"]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from train_bench import cpu_flags  # benchmarks/ is the script folder, so on sys.path

ROOT = Path(__file__).resolve().parents[1]
DATA = "heart-cleveland/processed.cleveland.data"
COLUMNS = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca",
           "thal", "num")
CATEGORICAL = ("cp", "restecg", "slope", "thal")  # one-hot for the linear baseline
ALPHAS = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
CHEST_PAIN = {1: "typical angina", 2: "atypical angina", 3: "non-anginal chest pain", 4: "no chest pain (asymptomatic)"}
RESTING_ECG = {0: "normal", 1: "ST-T wave abnormality", 2: "left ventricular hypertrophy"}
SLOPE = {1: "upsloping", 2: "flat", 3: "downsloping"}
THALLIUM = {3: "normal", 6: "fixed defect", 7: "reversible defect"}


def read_rows(path: Path) -> list[dict[str, float | None]]:
    """The 303 rows, '?' (6 cells of ca and thal) as None."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            cells = line.strip().split(",")
            rows.append({name: None if cell == "?" else float(cell) for name, cell in zip(COLUMNS, cells)})
    return rows


def note_of(row: dict[str, float | None]) -> str:
    """One row as the sentence a clinician might write (every attribute; the target left out)."""
    def num(value: float | None, unit: str = "") -> str:
        return "not recorded" if value is None else f"{value:g}{unit}"

    sex = "man" if row["sex"] == 1 else "woman"
    parts = [
        f"{row['age']:g}-year-old {sex} with {CHEST_PAIN[int(row['cp'])]}",
        f"resting blood pressure {num(row['trestbps'], ' mm Hg')}",
        f"cholesterol {num(row['chol'], ' mg/dL')}",
        "fasting blood sugar above 120 mg/dL" if row["fbs"] == 1 else "fasting blood sugar not raised",
        f"resting ECG: {RESTING_ECG[int(row['restecg'])]}",
        f"maximum heart rate {num(row['thalach'])}",
        "exercise-induced angina" if row["exang"] == 1 else "no exercise-induced angina",
        f"ST depression {num(row['oldpeak'])} on exercise with a {SLOPE[int(row['slope'])]} ST segment",
        ("major vessels coloured on fluoroscopy not recorded" if row["ca"] is None
         else f"{row['ca']:g} major vessels coloured on fluoroscopy"),
        "thallium scan " + ("not recorded" if row["thal"] is None else THALLIUM[int(row["thal"])]),
    ]
    return "; ".join(parts) + "."


def features(rows: list[dict[str, float | None]], medians: dict[str, float]) -> np.ndarray:
    """Numeric attributes, missing ones at the training median, categorical ones one-hot."""
    out = []
    for row in rows:
        values = {k: (row[k] if row[k] is not None else medians[k]) for k in COLUMNS[:-1]}
        vector = [values[k] for k in COLUMNS[:-1] if k not in CATEGORICAL]
        for name, table in (("cp", CHEST_PAIN), ("restecg", RESTING_ECG), ("slope", SLOPE), ("thal", THALLIUM)):
            vector += [1.0 if values[name] == code else 0.0 for code in table]
        out.append(vector)
    return np.array(out)


def figures(predicted: np.ndarray, observed: np.ndarray) -> dict[str, float | None]:
    error = predicted - observed
    spread = float(((observed - observed.mean()) ** 2).sum())
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())),
            "spearman": float(spearmanr(predicted, observed).statistic) if np.ptp(predicted) > 0 else None,
            "r2": 1 - float((error ** 2).sum()) / spread}


def ridge(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          x_test: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge with alpha picked by validation MAE, fitted on the training split only (as the head is)."""
    best = min(ALPHAS, key=lambda a: np.abs(Ridge(alpha=a).fit(x_train, y_train).predict(x_val) - y_val).mean())
    return Ridge(alpha=best).fit(x_train, y_train).predict(x_test), best


def split_rows(version: Path, by_text: dict[str, dict]) -> dict[str, tuple[list[dict], np.ndarray, list[str]]]:
    """The version's own splits (data/*.jsonl), mapped back to the rows they were written from."""
    out = {}
    for name in ("train", "validation", "test"):
        lines = [json.loads(line) for line in (version / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        rows = [by_text[line["text"]] for line in lines]
        out[name] = (rows, np.array([float(line["labels"][0]) for line in lines]), [line["text"] for line in lines])
    return out


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("HEALTHMON_SHARED_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--extra", default="", help="extra train flags, e.g. '--mode full' (default: none)")
    args = parser.parse_args()
    source = Path(args.shared) / DATA
    if not source.is_file():
        print(f"skipped: {source} not found (the UCI Cleveland heart data; set --shared or HEALTHMON_SHARED_DATA_DIR)")
        return
    rows = read_rows(source)
    print(f"CPU: {os.cpu_count()} cores; flags: {cpu_flags()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="healthmon-regression-bench-") as tmp:
        notes = Path(tmp) / "cleveland-notes.csv"
        with notes.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["note_id", "text", "num"])
            for i, row in enumerate(rows):
                writer.writerow([f"cleveland-{i + 1}", note_of(row), f"{row['num']:g}"])
        version = Path(tmp) / "version"
        cmd = [sys.executable, "-m", "healthmon", "train", "--data", str(notes), "--text-column", "text",
               "--label-column", "num", "--task", "regression", "--out", str(version), "--no-progress",
               *args.extra.split()]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        started = time.perf_counter()
        proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "HEALTHMON_DATA_DIR": tmp})
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        metrics = json.loads(proc.stdout.strip().splitlines()[-1])
        child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        splits = split_rows(version, {note_of(row): row for row in rows})
        (train_rows, y_train, t_train), (val_rows, y_val, t_val), (test_rows, y_test, t_test) = (
            splits["train"], splits["validation"], splits["test"])
    medians = {k: float(np.median([r[k] for r in train_rows if r[k] is not None])) for k in COLUMNS[:-1]}
    scaler = StandardScaler().fit(features(train_rows, medians))
    x_train, x_val, x_test = (scaler.transform(features(part, medians)) for part in (train_rows, val_rows, test_rows))
    numeric_pred, numeric_alpha = ridge(x_train, y_train, x_val, y_val, x_test)
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(t_train)
    text_pred, text_alpha = ridge(tfidf.transform(t_train), y_train, tfidf.transform(t_val), y_val,
                                  tfidf.transform(t_test))

    test, train = metrics["test"], metrics["train"]
    print(f"Cleveland heart disease, target num (0-4): {len(rows)} rows; split train {len(y_train)} / validation "
          f"{len(y_val)} / test {len(y_test)}; training mean {y_train.mean():.3f}")
    print("| method (test split) | MAE | RMSE | Spearman | R² |")
    print("|---|---|---|---|---|")
    table = [
        ("regression head, `train --task regression` (defaults: LoRA, Huber)", test),
        (f"ridge on the 13 numeric features (one-hot categorical), alpha {numeric_alpha:g}",
         figures(numeric_pred, y_test)),
        (f"ridge on TF-IDF of the same notes (1-2 grams), alpha {text_alpha:g}", figures(text_pred, y_test)),
        ("always the training mean", metrics["train_mean_baseline"]),
        ("the head before fine-tuning", metrics["before_finetune"]),
    ]
    for name, m in table:
        print(f"| {name} | {fmt(m['mae'])} | {fmt(m['rmse'])} | {fmt(m.get('spearman'))} | {fmt(m.get('r2'))} |")
    print(f"\nRun: {wall:.0f} s wall for the whole `train` command (fit {train['wall_s']:.0f} s, "
          f"{train['epochs_run']:.1f} of {train['epochs_budget']:.0f} planned epochs; stopped: {train.get('stopped_by')}); "
          f"peak RSS {child_rss_mb:.0f} MB (train process; its own record {train['peak_rss_mb']:.0f} MB).")
    print("Calibration (test, quantile bins of the prediction): " + "; ".join(
        f"predicted {b['predicted_mean']:.2f} → observed {b['observed_mean']:.2f} (n={b['count']})"
        for b in test["calibration_curve"]))


if __name__ == "__main__":
    main()
