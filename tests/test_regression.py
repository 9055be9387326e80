"""The regression head (``train --task regression``): numeric targets counted and split by quantile
bins, its figures by hand, a version that trains, saves, loads, predicts and explains on the tiny
BERT, exact attributions in value units on a toy, the CLI end to end, storage and the pages."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer
from transformers.modeling_outputs import SequenceClassifierOutput

from healthmon.config import Settings, bundled_base_model_dir
from healthmon.errors import ConfigError, ModelError, TrainingError
from healthmon.explain import clear_cache, explain, to_html
from healthmon.model.card import REGRESSION, ModelCard
from healthmon.model.classifier import Classifier
from healthmon.training.args import TrainArgs
from healthmon.training.evaluation import evaluate
from healthmon.training.regression import (
    build_regression_splits,
    quantile_bins,
    regression_metrics,
    target_rejections,
    values_of,
)
from healthmon.training.regression_run import regression_splits
from healthmon.training.trainer import train
from healthmon.types import Note

SEVERE = ["dyspnoea at rest", "troponin 2.4", "ST elevation", "cardiogenic shock", "three-vessel disease"]
MILD = ["no chest pain", "normal ECG", "walks 5 km", "BP 118/76", "routine follow-up"]


def severity_notes(n: int = 60, seed: int = 0) -> list[Note]:
    """Notes whose 0-4 severity is the number of severe findings among four."""
    rng = random.Random(seed)
    notes = []
    for i in range(n):
        severity = i % 5
        findings = rng.sample(SEVERE, severity) + rng.sample(MILD, 4 - severity)
        rng.shuffle(findings)
        notes.append(Note(text=f"Clinic visit {i}: " + "; ".join(findings) + ".", note_id=f"n{i}",
                          labels=(str(severity),), line=i + 2))
    return notes


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# ----------------------------------------------------------------------------- arguments and data


@pytest.mark.parametrize("knobs, needle", [
    ({"task": "ranking"}, "classification or regression"),
    ({"task": "regression", "loss": "l1"}, "mse or huber"),
    ({"loss": "mse"}, "--loss only with --task regression"),
    ({"task": "regression", "multi_label": True}, "one value per note"),
    ({"task": "regression", "head_init": "probe"}, "random head"),
    ({"task": "regression", "class_weight": "balanced"}, "no class weighting"),
    ({"task": "regression", "init_from": "/models/v1"}, "a fresh model"),
    ({"task": "regression", "search": "8"}, "no search"),
])
def test_train_args_refuse_what_a_regression_head_cannot_take(knobs, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainArgs(**knobs)
    assert TrainArgs(task="regression", loss="mse").loss == "mse"
    assert TrainArgs.from_dict(TrainArgs(task="regression", target_name="severity").to_dict()).task == "regression"


def test_targets_that_are_not_one_number_are_counted_and_listed_never_dropped_silently():
    good = severity_notes(30)
    bad = [Note("no value", "b1", labels=(), line=40), Note("a word", "b2", labels=("high",), line=41),
           Note("two values", "b3", labels=("1", "2"), line=42), Note("not finite", "b4", labels=("nan",), line=43),
           Note(good[0].text, "dup", labels=("3",), line=44)]  # the same note again with another value
    splits, report = build_regression_splits(good + bad, val_fraction=0.1, test_fraction=0.2, seed=1,
                                             target_name="severity")
    assert (report.rows_in, report.unlabelled, report.non_numeric_target, report.several_values) == (35, 1, 2, 1)
    assert report.rejected_targets == 4 and report.duplicates_removed == 1 and report.duplicate_label_conflicts == 1
    assert [(r["line"], r["note_id"]) for r in report.rejected_rows] == [(40, "b1"), (41, "b2"), (42, "b3"), (43, "b4")]
    assert "'high' is not a number" in report.rejected_rows[1]["reason"]
    assert "several target values" in report.rejected_rows[2]["reason"]
    rejected = target_rejections(good + bad)
    assert [r.line for r in rejected] == [40, 41, 42, 43] and "note b2" in rejected[1].reason
    assert splits.labels == ("severity",) and sum(report.split_sizes.values()) == 30
    assert report.target["min"] == 0 and report.target["max"] == 4 and report.target["distinct_values"] == 5
    with pytest.raises(TrainingError, match="at least 10 distinct notes"):
        build_regression_splits(bad, val_fraction=0.1, test_fraction=0.2, seed=1)
    with pytest.raises(TrainingError, match="target values that vary"):
        build_regression_splits([Note(f"note {i}", str(i), labels=("2",)) for i in range(20)],
                                val_fraction=0.1, test_fraction=0.2, seed=1)


def test_splits_are_stratified_by_quantile_bins_of_the_target():
    values = np.arange(200) * 0.5  # 0 .. 99.5, uniform
    notes = [Note(f"note number {i}", str(i), labels=(str(float(v)),)) for i, v in enumerate(values)]
    splits, report = build_regression_splits(notes, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert report.split_sizes == {"train": 140, "validation": 20, "test": 40}
    for part in (splits.validation, splits.test):
        got = values_of(part)
        # Ten bins of 20: every split holds its share of every tenth of the range.
        assert np.histogram(got, bins=10, range=(0, 100))[0].tolist() == [len(part) // 10] * 10
    texts = [e.text for part in (splits.train, splits.validation, splits.test) for e in part]
    assert len(texts) == len(set(texts)) == 200
    # Tied quantiles merge: a 0-4 score has at most five bins.
    bins = quantile_bins(np.array([0, 0, 0, 0, 1, 1, 2, 3, 4, 4.0]), 10)
    assert len(set(bins.tolist())) <= 5 and list(bins) == sorted(bins)


def test_regression_figures_by_hand():
    predicted, observed = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 5.0])
    m = regression_metrics(predicted, observed)
    assert m["n"] == 4 and m["mae"] == pytest.approx(0.75) and m["rmse"] == pytest.approx(np.sqrt(0.75))
    assert m["spearman"] == pytest.approx(0.8)  # ranks (1,2,3,4) vs (1,3,2,4)
    assert m["r2"] == pytest.approx(1 - 3 / 8.75)
    curve = m["calibration_curve"]
    assert sum(b["count"] for b in curve) == 4 and set(curve[0]) == {"predicted_mean", "observed_mean", "count"}
    assert sum(b["predicted_mean"] * b["count"] for b in curve) == pytest.approx(10.0)
    assert sum(b["observed_mean"] * b["count"] for b in curve) == pytest.approx(11.0)
    flat = regression_metrics(np.full(4, 2.75), observed)  # always the mean: no ranking, R² 0
    assert flat["spearman"] is None and flat["r2"] == pytest.approx(0.0) and len(flat["calibration_curve"]) == 1
    json.dumps(flat, allow_nan=False)  # the card is strict JSON


# ----------------------------------------------------------------------------- a version, end to end


@pytest.mark.parametrize("mode", ["lora", "head"])
def test_a_regression_version_trains_saves_loads_predicts_and_explains(mode, settings):
    notes = severity_notes(60) + [Note("a note whose severity is a word", "w", labels=("severe",), line=99)]
    args = TrainArgs(task="regression", mode=mode, max_steps=3, batch_size=8, lora_target_modules=("query", "value"),
                     target_name="severity", loss="mse" if mode == "head" else "huber")
    result = train(notes, args, out_dir=settings.data_dir / f"reg-{mode}", settings=settings, progress=False)

    card = ModelCard.load(result.version_dir)
    splits, _ = regression_splits(notes, args, settings)
    train_values = values_of(splits.train)
    assert card.problem_type == REGRESSION and card.regression and card.labels == ("severity",)
    assert card.target_mean == pytest.approx(train_values.mean()) and card.target_std == pytest.approx(train_values.std())
    assert card.temperature == 1.0 and card.thresholds == {} and card.metrics["calibration"]["method"].startswith("none")
    assert card.train_args["select_by"] == "loss" and card.train_args["loss"] == args.loss
    test = card.metrics["test"]
    assert {"mae", "rmse", "spearman", "r2", "calibration_curve", "n"} <= set(test) and test["n"] == len(splits.test)
    assert sum(b["count"] for b in test["calibration_curve"]) == len(splits.test)
    for block in ("before_finetune", "train_mean_baseline", "validation"):
        assert {"mae", "rmse", "calibration_curve"} <= set(card.metrics[block])
    baseline = card.metrics["train_mean_baseline"]["mae"]
    assert baseline == pytest.approx(np.abs(values_of(splits.test) - train_values.mean()).mean())
    assert card.data_report["non_numeric_target"] == 1 and card.data_report["rejected_rows"][0]["line"] == 99
    json.loads((result.version_dir / "card.json").read_text(), parse_constant=pytest.fail)  # no NaN in the card

    clf = Classifier.from_pretrained(result.version_dir, settings=settings, precision="fp32")
    texts = [e.text for e in splits.test]
    values = clf.predict_values(texts)
    assert values.shape == (len(texts),)
    assert np.abs(values - values_of(splits.test)).mean() == pytest.approx(test["mae"], abs=1e-5)
    assert evaluate(clf, [Note(e.text, str(i), labels=e.labels) for i, e in enumerate(splits.test)])["test"]["mae"] \
        == pytest.approx(test["mae"], abs=1e-5)
    one = clf.predict(texts[0])
    assert one.problem_type == REGRESSION and one.labels == ("severity",)
    assert one.value == pytest.approx(values[0], abs=1e-5) and one.probabilities == {"severity": one.value}
    with pytest.raises(ModelError, match="regression version"):
        clf.predict_proba(texts[0])

    # A long note (several windows): its value is the windows' token-weighted mean, and the
    # attributions add up to the predicted value's change from the baseline, in value units.
    long_note = " ".join(texts[:6])
    e = explain(clf, long_note)
    assert e.windows > 1 and e.kind == "value" and e.target == "severity"
    assert e.probability == pytest.approx(float(clf.predict_values([long_note])[0]), abs=1e-4)
    assert e.tolerance == pytest.approx(0.05 * card.target_std)
    assert e.converged and abs(e.delta) <= e.tolerance
    assert sum(w.score for w in e.words) == pytest.approx(e.probability - e.baseline_probability, abs=abs(e.delta) + 1e-6)
    assert e.faithfulness is not None and e.faithfulness.scale == pytest.approx(card.target_std)
    shown = to_html(e)
    assert "predicted value" in shown and "raises severity" in shown


class LinearValueToy(torch.nn.Module):
    """One output: the sum over tokens of embedding · v, so IG of a value is exact by hand."""

    def __init__(self, vocab: int, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.embed = torch.nn.Embedding(vocab, dim)
        self.v = torch.nn.Parameter(torch.randn(dim) * 0.3)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def token_outputs(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids) @ self.v

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> SequenceClassifierOutput:
        embeds = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        return SequenceClassifierOutput(logits=(embeds @ self.v * attention_mask).sum(dim=1, keepdim=True))


def test_toy_attributions_are_exact_in_the_targets_units():
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_base_model_dir()))
    card = ModelCard(("age",), REGRESSION, "toy", "full", max_length=64, window_stride=16,
                     target_mean=60.0, target_std=12.0)
    clf = Classifier(LinearValueToy(len(tokenizer)), tokenizer, card, name="toy", device="cpu", precision="fp32")
    text = "Retired teacher, grandchildren visit weekly; osteoarthritis of both knees."
    e = explain(clf, text, precision="fp32", faithfulness=False)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    base = ids.clone()
    base[0, 1:-1] = tokenizer.pad_token_id
    with torch.no_grad():
        zx, zb = clf.model.token_outputs(ids)[0].numpy(), clf.model.token_outputs(base)[0].numpy()
    # value = 60 + 12 * Σ token outputs: each token's attribution is 12 × its own change.
    assert np.array([t.score for t in e.tokens]) == pytest.approx(12.0 * (zx - zb), abs=1e-4)
    assert e.probability == pytest.approx(60.0 + 12.0 * zx.sum(), abs=1e-4)
    assert e.baseline_probability == pytest.approx(60.0 + 12.0 * zb.sum(), abs=1e-4)
    assert abs(e.delta) < 1e-3 and e.tolerance == pytest.approx(0.6) and e.steps == 4  # linear: no refinement
    assert clf.predict(text).value == pytest.approx(e.probability, abs=1e-4)


# ----------------------------------------------------------------------------- the CLI and storage


@pytest.fixture()
def severity_csv(tmp_path):
    path = tmp_path / "severity.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note_id", "text", "severity"])
        for note in severity_notes(50):
            writer.writerow([note.note_id, note.text, note.labels[0]])
        writer.writerow(["bad-1", "A note with a word for a score", "moderate"])  # line 52
        writer.writerow(["bad-2", "A note without a score", ""])  # line 53
    return path


def test_cli_trains_predicts_evaluates_and_explains_a_regression_version(tmp_path, settings, severity_csv,
                                                                         monkeypatch, capsys):
    from healthmon.cli import main

    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HEALTHMON_BASE_MODEL", settings.base_model)
    monkeypatch.setenv("HEALTHMON_MAX_LENGTH", "64")
    out = tmp_path / "version"
    assert main(["train", "--data", str(severity_csv), "--label-column", "severity", "--task", "regression",
                 "--mode", "head", "--max-steps", "2", "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out.strip().splitlines()[-1])
    assert {"mae", "rmse", "spearman", "r2", "calibration_curve"} <= set(metrics["test"])
    assert "mae" in metrics["train_mean_baseline"] and metrics["target"]["name"] == "severity"
    assert metrics["target"]["rejected_rows"] == 2
    assert "2 of 52 rows have no usable target" in captured.err
    assert "rejected line 52: target 'moderate' is not a number" in captured.err
    assert "rejected line 53: no target value" in captured.err

    assert main(["evaluate", "--model", str(out), "--data", str(severity_csv), "--label-column", "severity"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["test"]["n"] == 50 and evaluated["skipped"] == {"unlabelled": 1, "not_numeric": 1,
                                                                     "several_values": 0}
    predictions = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(out), "--data", str(severity_csv), "--out", str(predictions),
                 "--precision", "fp32"]) == 0
    rows = list(csv.DictReader(predictions.open(encoding="utf-8")))
    assert len(rows) == 52 and rows[0]["target"] == "severity" and not any(k.startswith("p_") for k in rows[0])
    float(rows[0]["predicted"])
    explained = tmp_path / "why.jsonl"
    assert main(["explain", "--model", str(out), "--text", "ST elevation; troponin 2.4; normal ECG",
                 "--out", str(explained), "--no-faithfulness"]) == 0
    row = json.loads(explained.read_text(encoding="utf-8"))
    assert row["explanation"]["kind"] == "value" and row["explanation"]["target"] == "severity"
    assert row["explanation"]["converged"]
    assert main(["train", "--data", str(severity_csv), "--label-column", "severity", "--task", "regression",
                 "--multi-label", "--out", str(tmp_path / "v2")]) == 2
    assert "one value per note" in capsys.readouterr().err


def test_a_stored_regression_prediction_is_a_value_the_risk_facts_leave_out(settings, tmp_path):
    from healthmon.services.cases import case_detail, predictions_table_rows
    from healthmon.services.database import connect
    from healthmon.services.notes import store_scored
    from healthmon.services.patients import patient_snapshot

    version = train(severity_notes(40), TrainArgs(task="regression", mode="head", max_steps=1, target_name="severity"),
                    out_dir=settings.data_dir / "reg", settings=settings, progress=False).version_dir
    clf = Classifier.from_pretrained(version, settings=settings, precision="fp32")
    notes = [Note("ST elevation and cardiogenic shock", "a", patient_id="P-1"), Note("normal ECG", "b", patient_id="P-1")]
    predictions = clf.predict([n.text for n in notes])
    factory = connect(Settings(data_dir=tmp_path / "db"))
    note_ids, _ = store_scored(factory, "cli", notes, predictions, version)
    case = case_detail(factory, note_ids[0])
    assert case.regression and case.probabilities == {"severity": pytest.approx(predictions[0].value)}
    rows = predictions_table_rows(factory, note_ids)
    assert [r["value"] for r in rows] == pytest.approx([p.value for p in predictions])
    assert all(r["predicted"] == "severity" and not any(k.startswith("P(") for k in r) for r in rows)
    # A value outside 0..1 is stored as it is, and never read as a probability by the advice rules.
    assert patient_snapshot(factory, "P-1").findings.risk == {}
    # Continual fine-tuning from reviewed labels is for classifiers: refused before anything trains.
    from healthmon.services.retrain import retrain

    with pytest.raises(TrainingError, match="a classification version to continue"):
        retrain(factory, settings=settings, parent_dir=version)


# ----------------------------------------------------------------------------- the pages


@pytest.fixture()
def regression_dash(settings, monkeypatch):
    from test_pages import serve

    version = train(severity_notes(40), TrainArgs(task="regression", mode="head", max_steps=2, target_name="severity"),
                    out_dir=settings.data_dir / "served-regression", settings=settings, progress=False).version_dir
    yield from serve(version, settings, monkeypatch)


def test_the_pages_show_a_predicted_value_not_probabilities(regression_dash):
    from test_pages import HOSTILE, _texts

    home = regression_dash.page("app", "cli")
    assert not home.exception and {m.label for m in home.metric} >= {"Test MAE (severity)", "Test Spearman"}

    at = regression_dash.page("Notes", "cli")
    at.text_area[0].input(HOSTILE)
    at.button[0].click().run()
    assert regression_dash.run_jobs() == 1
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == ["case", "note", "predicted severity", "excerpt"]
    value = float(table["predicted severity"][0])
    at.number_input(key="filter_value_floor").set_value(value + 1).run()
    assert len(at.dataframe[0].value) == 0

    note_id = int(table["case"][0])
    case = regression_dash.page("Case", "cli", case_id=note_id)
    assert not case.exception and not case.get("plotly_chart")
    assert any(m.label == "Predicted severity" and m.value == f"{value:.3g}" for m in case.metric)
    assert not [s for s in case.selectbox if s.key == f"case-{note_id}-target"]  # one value: nothing to choose
    highlighted = "".join(h.proto.body for h in case.get("html"))
    assert "predicted value" in highlighted and "raises severity" in highlighted and "<script>" not in highlighted
    assert "(predicted severity" in _texts(case, "markdown") and "Trust:" in _texts(case, "markdown")
