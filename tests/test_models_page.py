"""The Models page's evaluation views: before / after fine-tuning, the search's trials, what
stopped training, calibration intervals, regression versions, and two versions side by side.

Figures and tables are checked from small card dictionaries (every key may be missing on an
older card); the comparison service and the page use real tiny versions (the fixture BERT, a
2-step head fine-tune). A second version that is sure to disagree is the first one with its
label names rotated: the same scores, every prediction a different label.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import test_pages
from sqlalchemy import select

from healthmon.errors import HealthmonError, ModelError
from healthmon.figures import (
    calibration_interval_figure,
    chosen_trial,
    per_label_f1_figure,
    regression_figure,
    search_trials_figure,
)
from healthmon.model.card import ModelCard
from healthmon.model.classifier import Classifier
from healthmon.model.lineage import load_examples
from healthmon.services.accounts import SignedIn
from healthmon.services.comparison import compare_versions
from healthmon.storage.db import transaction
from healthmon.storage.models import ModelVersion
from healthmon.storage.repository import register_version
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train
from healthmon.ui.models import (
    calibration_sentences,
    headline_table,
    per_label_table,
    search_sentence,
    stages,
    stopping_sentence,
    trials_table,
)

HOSTILE, _texts = test_pages.HOSTILE, test_pages._texts
dash = test_pages.dash  # the dashboard fixture: a served tiny version, its database and users

LABELS = ["cancer", "diabetes", "hypertension"]


def _per_class(f1s: list[float], support: int = 4) -> dict:
    return {label: {"precision": f1, "recall": f1, "f1": f1, "support": support} for label, f1 in zip(LABELS, f1s)}


def _evaluation(accuracy: float, f1s: list[float], ece: float) -> dict:
    return {"n": 12, "accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s), "ece": ece, "auroc_macro": None,
            "per_class": _per_class(f1s), "confusion_matrix": [[4, 0, 0], [1, 3, 0], [0, 1, 3]]}


def _trial(number: int, lr: float, state: str, values: list[float], head: str = "random") -> dict:
    return {"number": number, "params": {"learning_rate": lr, "head_init": head, "class_weight": "none"},
            "state": state, "value": values[-1] if state != "failed" else None,
            "curve": [{"step": 10 * (i + 1), "value": v} for i, v in enumerate(values)], "wall_s": 3.5}


SEARCH = {"mode": "auto", "ran": True, "reason": "1,200 training notes: enough to search", "objective":
          "validation macro_f1", "wall_s": 42.0,
          "trials": [_trial(0, 2e-5, "complete", [0.4, 0.6, 0.7]), _trial(1, 1e-3, "pruned", [0.2, 0.25]),
                     _trial(2, 5e-5, "complete", [0.5, 0.7, 0.8], head="probe"), _trial(3, 1e-2, "failed", [])],
          "chosen": {"learning_rate": 5e-5, "head_init": "probe", "class_weight": "none"}}


def new_metrics() -> dict:
    """What the new training code records: stages, search, stopping and calibration with intervals."""
    test = _evaluation(0.9, [0.95, 0.85, 0.9], 0.04) | {
        "ece_uncalibrated": 0.12, "ece_interval": [0.02, 0.07], "ece_uncalibrated_interval": [0.08, 0.16]}
    return {"test": test, "validation": _evaluation(0.88, [0.9, 0.85, 0.88], 0.05),
            "before_finetune": _evaluation(0.33, [0.5, 0.0, 0.1], 0.3),
            "head_init": {"method": "probe", "test": _evaluation(0.7, [0.8, 0.6, 0.7], 0.1)},
            "search": SEARCH,
            "train": {"mode": "lora", "wall_s": 120.0, "epochs_run": 6.0, "time_budget_s": 2700.0, "max_epochs": 20,
                      "stopped_by": "validation macro-F1 (smoothed) stopped improving for 3 evaluations"},
            "calibration": {"method": "temperature", "temperature": 1.7, "cv_ece_fitted": 0.03,
                            "cv_ece_unscaled": 0.11, "kept_unscaled": False}}


# --- figures -------------------------------------------------------------------------------


def test_the_trials_figure_draws_a_line_per_trial_pruned_dashed_and_the_chosen_one_thick():
    assert chosen_trial(SEARCH) == 2
    fig = search_trials_figure(SEARCH)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"trial 0 (complete)", "trial 1 (pruned)", "trial 2 (chosen)"}  # the failed one has no curve
    assert traces["trial 1 (pruned)"].line.dash == "dash" and traces["trial 0 (complete)"].line.dash == "solid"
    assert traces["trial 2 (chosen)"].line.width > traces["trial 0 (complete)"].line.width
    assert fig.data[-1].name == "trial 2 (chosen)"  # drawn last: on top
    assert list(traces["trial 2 (chosen)"].x) == [10, 20, 30] and list(traces["trial 2 (chosen)"].y) == [0.5, 0.7, 0.8]
    assert fig.layout.yaxis.title.text == "validation macro_f1"
    assert search_trials_figure({"mode": "off", "ran": False}) is None
    assert search_trials_figure({"trials": [{"number": 0, "state": "failed"}]}) is None
    assert chosen_trial({"trials": SEARCH["trials"]}) is None  # nothing chosen: nothing highlighted


def test_per_label_f1_figure_groups_the_stages_and_needs_two():
    fig = per_label_f1_figure({"before": _per_class([0.1, 0.2, 0.3]), "after": _per_class([0.7, 0.8, 0.9])},
                              LABELS)
    assert [t.name for t in fig.data] == ["before", "after"] and list(fig.data[1].y) == [0.7, 0.8, 0.9]
    assert per_label_f1_figure({"after": _per_class([0.7, 0.8, 0.9]), "before": {}}, LABELS) is None
    hostile = per_label_f1_figure({"<b>a</b>": {"<i>x</i>": {"f1": 1.0}}, "b": {"<i>x</i>": {"f1": 0.5}}},
                                  ["<i>x</i>"])
    assert list(hostile.data[0].x) == ["&lt;i&gt;x&lt;/i&gt;"] and hostile.data[0].name == "&lt;b&gt;a&lt;/b&gt;"


def test_calibration_interval_figure_shows_each_ece_with_its_interval():
    fig = calibration_interval_figure(new_metrics()["test"])
    points = fig.data[0]
    assert list(points.y) == ["uncalibrated", "calibrated"] and list(points.x) == [0.12, 0.04]
    assert list(points.error_x.array) == pytest.approx([0.04, 0.03])
    assert list(points.error_x.arrayminus) == pytest.approx([0.04, 0.02])
    assert calibration_interval_figure({"ece": 0.04, "ece_uncalibrated": 0.12}) is None  # no intervals recorded
    only = calibration_interval_figure({"ece": 0.04, "ece_interval": [0.01, 0.06]})
    assert list(only.data[0].y) == ["calibrated"]


def test_regression_figure_plots_observed_against_predicted_means():
    curve = [{"predicted_mean": 1.0, "observed_mean": 1.5, "count": 10},
             {"predicted_mean": 3.0, "observed_mean": 2.5, "count": 40}, {"predicted_mean": 9.0, "count": 0}]
    fig = regression_figure({"mae": 0.5, "calibration_curve": curve})
    diagonal, model = fig.data
    assert list(model.x) == [1.0, 3.0] and list(model.y) == [1.5, 2.5] and list(model.customdata) == [10, 40]
    assert list(diagonal.x) == [1.0, 3.0]
    assert regression_figure({"mae": 0.5}) is None


# --- tables and sentences (older cards show nothing) -------------------------------------------


def test_before_after_table_puts_each_stage_beside_the_fine_tuned_scores():
    metrics = new_metrics()
    found = stages(metrics)
    assert list(found) == ["before fine-tuning", "probe-only head", "fine-tuned"]
    table = headline_table(found).set_index("metric")
    assert table.loc["accuracy"].tolist() == [0.33, 0.7, 0.9]
    assert "AUROC (macro)" not in table.index and "MAE" not in table.index  # no stage has them
    f1 = per_label_table(found, LABELS, ("f1",)).set_index("label")
    assert f1.loc["cancer"].tolist() == [0.5, 0.8, 0.95, 4]  # three F1s and the common support
    assert list(stages({"test": metrics["test"]})) == ["fine-tuned"]  # older card: nothing to put beside it
    assert stages({}) == {} and headline_table({}) is None
    numbers = {"before_finetune": {"mae": 2.0, "rmse": 2.5}, "train_mean_baseline": {"mae": 1.5, "rmse": 1.9},
               "head_init": {"method": "random"}, "test": {"mae": 0.5, "rmse": 0.7, "spearman": 0.8}}
    table = headline_table(stages(numbers)).set_index("metric")
    assert list(table.columns) == ["before fine-tuning", "training mean", "fine-tuned"]
    assert table.loc["MAE"].tolist() == [2.0, 1.5, 0.5] and "accuracy" not in table.index


def test_search_stopping_and_calibration_in_words_and_table():
    metrics = new_metrics()
    words = search_sentence(metrics["search"])
    assert "4 trial(s) (2 complete, 1 pruned, 1 failed) in 42 s" in words
    assert "chose learning rate 5e-05, head start probe, class weights none" in words
    assert "maximising validation macro_f1" in words
    assert search_sentence({"mode": "off", "ran": False, "reason": "searching was turned off"}) == (
        "No hyper-parameter search (mode off): searching was turned off.")
    table = trials_table(metrics["search"])
    assert table["chosen"].tolist() == [False, False, True, False]
    assert table["state"].tolist() == ["complete", "pruned", "complete", "failed"]
    assert table["last step"].tolist()[:3] == [30, 20, 30] and table["learning rate"].tolist()[1] == 1e-3
    assert trials_table({"mode": "off", "ran": False}) is None
    stop = stopping_sentence(metrics["train"])
    assert stop.startswith("Training stopped: validation macro-F1 (smoothed) stopped improving for 3 evaluations.")
    assert "a time budget of 45 min and at most 20 epochs" in stop
    assert stopping_sentence({"mode": "head", "wall_s": 3.0, "epochs_run": 2.0}) is None  # an older card
    lines = calibration_sentences(metrics["calibration"], metrics["test"])
    assert lines[0] == "Calibration method: temperature; temperature 1.7."
    assert "ECE 0.110 unscaled against 0.030 with the fitted temperature" in lines[1]
    assert lines[-1] == ("On the test notes: ECE 0.120 (95% interval 0.080 to 0.160) before calibration, "
                         "0.040 (95% interval 0.020 to 0.070) after.")
    kept = calibration_sentences(metrics["calibration"] | {"kept_unscaled": True, "temperature": 1.0}, {})
    assert kept[0] == "Calibration method: temperature." and "kept unscaled" in kept[-1]
    off = calibration_sentences({"method": "none (calibrate=False)", "temperature": 1.0, "kept_unscaled": True}, {})
    assert off == ["Calibration method: none (calibrate=False)."]  # nothing was fitted: no "did not help"
    assert calibration_sentences({}, {}) == []


# --- the comparison service -----------------------------------------------------------------


def _rotated(folder: Path, target: Path) -> Path:
    """The same weights with the label names rotated: every prediction names another label."""
    shutil.copytree(folder, target)
    raw = json.loads((target / "card.json").read_text(encoding="utf-8"))
    raw["labels"] = raw["labels"][1:] + raw["labels"][:1]
    (target / "card.json").write_text(json.dumps(raw), encoding="utf-8")
    return target


def _as_regression(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    raw = json.loads((target / "card.json").read_text(encoding="utf-8"))
    raw["problem_type"] = "regression"
    raw["metrics"] = {"test": {"n": 8, "mae": 0.42, "rmse": 0.61, "spearman": 0.77, "calibration_curve": [
        {"predicted_mean": 1.0, "observed_mean": 1.2, "count": 4}, {"predicted_mean": 2.0, "observed_mean": 1.9,
                                                                     "count": 4}]}}
    (target / "card.json").write_text(json.dumps(raw), encoding="utf-8")
    return target


@pytest.fixture()
def version(settings, notes) -> Path:
    return train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "first", settings=settings,
                 progress=False).version_dir


def test_two_versions_are_scored_on_the_first_ones_test_notes_and_their_disagreements_listed(version, settings,
                                                                                           tmp_path):
    second = _rotated(version, tmp_path / "rotated")
    gold = load_examples(version, "test")
    served = Classifier.from_pretrained(version, settings=settings, precision="fp32").predict([t for t, _ in gold])
    result = compare_versions("cli", version, second, settings=settings)
    assert (result.first, result.second) == ("first", "rotated")
    assert result.available == result.scored == result.disagreeing == len(gold) and not result.truncated
    assert result.first_correct == sum(set(p.labels) == set(g) for p, (_, g) in zip(served, gold))
    labels = ModelCard.load(version).labels
    rotate = dict(zip(labels, labels[1:] + labels[:1]))
    by_text = {d.text: d for d in result.disagreements}
    for prediction, (text, truth) in zip(served, gold):
        d = by_text[text]
        assert d.gold == truth and d.first == prediction.labels
        assert d.second == tuple(rotate[label] for label in prediction.labels)  # same scores, renamed
        assert d.first_probability == pytest.approx(max(prediction.probabilities.values()))
        assert d.second_probability == pytest.approx(d.first_probability, abs=1e-5)
    # Those exactly one version gets right come first.
    rights = [d.right for d in result.disagreements]
    assert rights == sorted(rights, key=lambda r: r == "neither")


def test_the_comparison_stops_at_its_limits_and_refuses_what_it_cannot_compare(version, settings, tmp_path):
    second = _rotated(version, tmp_path / "rotated")
    loaded = []

    def load(folder: str) -> Classifier:
        loaded.append(Path(folder).name)
        return Classifier.from_pretrained(folder, settings=settings, precision="fp32")

    small = compare_versions("cli", version, second, settings=settings, load_classifier=load, max_notes=3, shown=2)
    assert loaded == ["first", "rotated"]
    assert small.scored == 3 and small.truncated and small.disagreeing == 3
    assert len(small.disagreements) == 2 and small.hidden == 1
    with pytest.raises(ModelError, match="two different versions"):
        compare_versions("cli", version, version, settings=settings)
    with pytest.raises(ModelError, match="regression"):
        compare_versions("cli", version, _as_regression(version, tmp_path / "numbers"), settings=settings)
    bare = tmp_path / "bare"
    shutil.copytree(version, bare, ignore=shutil.ignore_patterns("test.jsonl"))
    with pytest.raises(ModelError, match="test notes stored with bare"):
        compare_versions("cli", bare, second, settings=settings)
    # A signed-in caller is checked in the database (every role may view models): one with no
    # account there is refused, whatever role its SignedIn claims.
    stranger = SignedIn(1, "eve", "admin", "token", datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(HealthmonError, match="account"):
        compare_versions(stranger, version, second, settings=settings)


# --- the page ---------------------------------------------------------------------------------


def _with_new_metrics(folder: Path) -> None:
    raw = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    raw["metrics"] = {**raw["metrics"], **{k: v for k, v in new_metrics().items() if k not in ("test", "validation")}}
    raw["metrics"]["test"] |= {"ece_interval": [0.02, 0.07], "ece_uncalibrated_interval": [0.08, 0.16]}
    (folder / "card.json").write_text(json.dumps(raw), encoding="utf-8")


def _charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_models_page_shows_before_after_the_search_and_calibration_from_the_card(dash):
    _with_new_metrics(dash.version)
    at = dash.page("Models", "cli")
    assert not at.exception
    text = _texts(at, "markdown")
    assert "Searched 4 trial(s) (2 complete, 1 pruned, 1 failed) in 42 s" in text
    assert "Training stopped: validation macro-F1 (smoothed) stopped improving for 3 evaluations." in text
    assert "(95% interval 0.080 to 0.160) before calibration" in text
    tables = [t.value for t in at.dataframe]
    stage_table = next(t for t in tables if "before fine-tuning" in t.columns)
    assert list(stage_table.columns) == ["metric", "before fine-tuning", "probe-only head", "fine-tuned"]
    assert stage_table.set_index("metric").loc["accuracy", "before fine-tuning"] == pytest.approx(0.33)
    trials = next(t for t in tables if "state" in t.columns)
    assert trials["chosen"].tolist() == [False, False, True, False]
    names = {trace.get("name") for spec in _charts(at) for trace in spec["data"]}
    assert {"trial 2 (chosen)", "trial 1 (pruned)", "before fine-tuning", "fine-tuned"} <= names
    # Only one version: nothing to compare with, and no button for it.
    assert "nothing to compare" in _texts(at, "caption") and not any(b.label.startswith("Score both") for b in at.button)


def test_an_older_card_shows_no_search_and_no_stages(dash):
    raw = json.loads((dash.version / "card.json").read_text(encoding="utf-8"))
    older_test = {k: v for k, v in raw["metrics"]["test"].items() if not k.endswith("_interval")}
    raw["metrics"] = {"test": older_test, "train": {"mode": "head", "wall_s": 1.0}}
    (dash.version / "card.json").write_text(json.dumps(raw), encoding="utf-8")
    at = dash.page("Models", "ada")
    assert not at.exception
    captions = _texts(at, "caption")
    assert "no test scores from before fine-tuning" in captions and "no search, stopping rule" in captions


def test_models_page_compares_two_versions_and_lists_their_disagreements_as_text(dash, tmp_path, monkeypatch):
    from healthmon.services import comparison

    calls = []
    real = comparison.compare_versions
    monkeypatch.setattr(comparison, "compare_versions", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    test_file = dash.version / "data" / "test.jsonl"
    with test_file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": HOSTILE, "labels": ["diabetes"]}) + "\n")
    rotated = _rotated(dash.version, tmp_path / "rotated")
    numbers = _as_regression(dash.version, tmp_path / "numbers")
    dash.page("Models", "ada")  # registers the served version
    with transaction(dash.factory) as s:
        for folder in (rotated, numbers):
            register_version(s, folder.name, str(folder), json.loads(ModelCard.load(folder).to_json()))
    at = dash.page("Models", "ann")
    at.selectbox(key="compare_first").select("served").run()
    at.selectbox(key="compare_second").select("rotated").run()
    assert not at.exception
    side = next(t.value for t in at.dataframe if "served: f1" in t.value.columns)
    assert "rotated: f1" in side.columns
    assert _texts(at, "caption").count("Confusion: ") == 2  # one matrix each
    [button] = [b for b in at.button if b.label == "Score both on the test notes of served"]
    button.click().run()
    assert not at.exception and not at.error
    n = len(load_examples(dash.version, "test"))
    assert f"On {n} test note(s) of served:" in _texts(at, "markdown")
    table = next(t.value for t in at.dataframe if "gold" in t.value.columns)
    assert len(table) == n and set(table.columns) == {"note", "gold", "served: predicted", "served: probability",
                                                      "rotated: predicted", "rotated: probability", "right"}
    hostile = table[table["gold"] == "diabetes"]["note"].tolist()
    assert HOSTILE in hostile  # the note as text: the dataframe never renders it as markup
    # The result stays on the page across reruns (cached for the pair), without scoring again.
    at.radio(key="model_split").set_value("validation").run()
    assert any("gold" in t.value.columns for t in at.dataframe)
    assert calls == [(str(dash.version), str(rotated))]
    # A regression version: its error and predicted-vs-observed figure, no confusion matrix or per-label F1.
    at.selectbox(key="model_version").select("numbers").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric if m.label == "MAE"} == {"MAE": "—"}  # no validation metrics
    at.radio(key="model_split").set_value("test").run()
    assert {m.label: m.value for m in at.metric if m.label in ("MAE", "RMSE", "Spearman")} == {
        "MAE": "0.420", "RMSE": "0.610", "Spearman": "0.770"}
    assert "Macro-F1" not in [m.label for m in at.metric]
    observed = [trace for spec in _charts(at) for trace in spec["data"] if trace.get("name") == "this model"]
    assert [trace["x"] for trace in observed] == [[1.0, 2.0]]  # predicted against observed; no reliability diagram
    at.selectbox(key="compare_first").select("numbers").run()
    assert not at.exception and "Note-by-note comparison is for classification versions." in _texts(at, "caption")
    with transaction(dash.factory) as s:
        assert s.scalar(select(ModelVersion.status).where(ModelVersion.name == "numbers")) == "candidate"
