"""Inference speed: healthmon's paths against transformers' pipeline, in one run.

512 notes of mixed length (30-400 tokens, cut from the Medical Abstracts corpus, or from
the synthetic demo corpus when the shared data folder is absent) are scored by:

  * pipeline("text-classification") with its defaults (batch 1) and with batch_size=32,
  * healthmon's Classifier in fp32, in bf16 autocast (where the CPU has native bf16) and int8,

interleaved over --repeats rounds (medians reported), on the same merged model. Each path
prints notes/s, its ratio to the pipeline's better setting, top-label agreement and max
probability drift against healthmon fp32, and the fraction of this machine's measured
matmul peak (fp32 for fp32/int8 paths, bf16 for the bf16 path) that it reaches.

    python benchmarks/inference_bench.py [--model VERSION_DIR] [--notes 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from healthmon.config import Settings  # noqa: E402
from healthmon.model.card import SINGLE_LABEL, ModelCard  # noqa: E402
from healthmon.model.classifier import Classifier  # noqa: E402
from healthmon.model.device import bf16_is_fast  # noqa: E402
from healthmon.model.loading import build_model  # noqa: E402


def source_texts(shared: Path) -> tuple[list[str], str]:
    path = shared / "medical-abstracts" / "medical_tc_test.csv"
    if path.is_file():
        import pandas as pd

        return pd.read_csv(path)["medical_abstract"].tolist(), "Medical Abstracts (real)"
    from healthmon.demo import generate_demo_notes

    return [n.text for n in generate_demo_notes(2000, seed=1)], "synthetic demo notes"


def mixed_length_notes(tokenizer, texts: list[str], n: int, seed: int) -> list[str]:
    """Notes whose token counts spread uniformly over 30-400, cut at word boundaries."""
    rng = random.Random(seed)
    out: list[str] = []
    pool = [t for t in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= 60]
    while len(out) < n:
        text = rng.choice(pool)
        target = rng.randint(30, 400)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= target:
            out.append(text)
            continue
        out.append(text[: enc["offset_mapping"][target - 1][1]])
    return out


def encoder_flops(lengths: np.ndarray, hidden: int, layers: int, intermediate: int) -> float:
    """Forward FLOPs (2 per multiply-add) of a BERT encoder over notes of these lengths."""
    per_layer = (
        2 * lengths * (4 * hidden * hidden)          # Q, K, V, O projections
        + 2 * lengths * (2 * hidden * intermediate)  # feed-forward up and down
        + 2 * 2 * lengths**2 * hidden                # QK^T and attention x V
    )
    return float(per_layer.sum() * layers)


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 20) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="version folder (default: the demo model, else an untrained 4-label head)")
    parser.add_argument("--notes", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    settings = Settings()

    model_dir = Path(args.model) if args.model else settings.demo_model_dir
    if (model_dir / "card.json").is_file():
        reference = Classifier.from_pretrained(model_dir, settings=settings, precision="fp32")
        model_name = str(model_dir)
    else:
        labels = ("none", "diabetes", "hypertension", "cancer")
        torch.manual_seed(args.seed)
        card = ModelCard(labels=labels, problem_type=SINGLE_LABEL, base_model=settings.base_model,
                         weights_format="full", max_length=512, window_stride=64)
        tok = AutoTokenizer.from_pretrained(settings.resolved_base_model)
        reference = Classifier(build_model(settings.base_model, labels, SINGLE_LABEL), tok, card, precision="fp32")
        model_name = "untrained 4-label head on the bundled base"
    # One window per note (all notes are <= 400 tokens), so every path does identical work.
    card512 = dataclasses.replace(reference.card, max_length=512)
    reference.card = card512
    tokenizer, model = reference.tokenizer, reference.model

    texts, source = source_texts(settings.shared_data_dir)
    notes = mixed_length_notes(tokenizer, texts, args.notes, args.seed)
    lengths = np.array([len(ids) for ids in tokenizer(notes)["input_ids"]])
    config = model.config
    flops = encoder_flops(lengths, config.hidden_size, config.num_hidden_layers, config.intermediate_size)

    paths = {
        "healthmon fp32": reference,
        "healthmon int8": Classifier(model, tokenizer, card512, precision="int8"),
    }
    if bf16_is_fast(torch.device("cpu")):
        paths["healthmon bf16"] = Classifier(model, tokenizer, card512, precision="bf16")
    auto_choice = Classifier(model, tokenizer, card512, precision="auto").precision
    default_path = f"healthmon {auto_choice}"
    check = card512.metrics.get("precision_check", {}).get("bf16")
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1, top_k=None)
    fn = "sigmoid" if reference.multi_label else "softmax"

    def run_pipeline(batch_size: int | None) -> np.ndarray:
        kwargs = {"batch_size": batch_size} if batch_size else {}
        out = pipe(notes, truncation=True, max_length=512, function_to_apply=fn, **kwargs)
        return np.array([[dict((d["label"], d["score"]) for d in row)[label] for label in reference.labels] for row in out])

    runners = {
        "pipeline defaults (batch 1)": lambda: run_pipeline(None),
        "pipeline batch_size=32": lambda: run_pipeline(32),
        **{name: (lambda clf=clf: np.atleast_2d(clf.predict_proba(notes))) for name, clf in paths.items()},
    }
    # Temperature is part of healthmon's output but not the pipeline's; compare raw probabilities.
    for clf in paths.values():
        clf.card = dataclasses.replace(card512, temperature=1.0)

    timings: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, np.ndarray] = {}
    runners["healthmon fp32"]()  # warm-up: first-call allocations and thread pools
    for _ in range(args.repeats):
        for name, fn_run in runners.items():
            start = time.perf_counter()
            outputs[name] = fn_run()
            timings[name].append(time.perf_counter() - start)

    peak32 = matmul_peak(torch.float32)
    peak16 = matmul_peak(torch.bfloat16) if bf16_is_fast(torch.device("cpu")) else float("nan")
    rate = {name: args.notes / statistics.median(t) for name, t in timings.items()}
    anchor = max(rate["pipeline defaults (batch 1)"], rate["pipeline batch_size=32"])
    ref = outputs["healthmon fp32"]
    print(f"model: {model_name}; notes: {args.notes} from {source}, {lengths.min()}-{lengths.max()} tokens "
          f"(mean {lengths.mean():.0f}), {flops / args.notes / 1e9:.2f} GFLOP/note; torch threads {torch.get_num_threads()}; "
          f"medians of {args.repeats} interleaved rounds")
    print(f"measured matmul peak: fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s")
    print(f"precision=auto picks {auto_choice} for this model (its card's bf16 check on the test split: {check})")
    print("| path | notes/s | × pipeline best | top-label agreement vs fp32 | max prob drift vs fp32 | % of matmul peak |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name in runners:
        agree = float((outputs[name].argmax(1) == ref.argmax(1)).mean())
        drift = float(np.abs(outputs[name] - ref).max())
        peak = peak16 if "bf16" in name else peak32
        frac = flops / statistics.median(timings[name]) / peak
        results[name] = {"notes_per_s": rate[name], "ratio": rate[name] / anchor, "agreement": agree, "drift": drift,
                         "peak_fraction": frac}
        print(f"| {name} | {rate[name]:.1f} | {rate[name] / anchor:.2f} | {agree:.2%} | {drift:.4f} | {frac:.0%} |")
    targets = [
        (default_path + " (auto default)", 2.0, 0.995, 0.01), ("healthmon fp32", 1.3, None, None), ("healthmon int8", 3.0, None, None)
    ]
    for name, ratio, agreement, drift in targets:
        r = results[name.replace(" (auto default)", "")]
        verdict = r["ratio"] >= ratio and (agreement is None or r["agreement"] >= agreement) and (drift is None or r["drift"] <= drift)
        extra = f", agreement ≥ {agreement:.1%}, drift ≤ {drift}" if agreement else ""
        print(f"target {name}: ≥ {ratio}× pipeline{extra}: {'met' if verdict else 'MISSED'} ({r['ratio']:.2f}×)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model_name, "results": results, "peak_fp32": peak32, "peak_bf16": peak16}, indent=2))


if __name__ == "__main__":
    main()
