"""Fine-tuning plumbing on a tiny random BERT: every mode, both problem types, saved and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from healthmon.errors import ConfigError, ModelError, TrainingError
from healthmon.model.card import MULTI_LABEL, SINGLE_LABEL, ModelCard
from healthmon.model.classifier import Classifier
from healthmon.model.versions import list_versions
from healthmon.training.args import TrainArgs
from healthmon.training.evaluation import evaluate
from healthmon.training.metrics import classification_metrics
from healthmon.training.trainer import train, train_splits_only
from healthmon.types import Note

from conftest import make_notes


@pytest.mark.parametrize("mode", ["full", "lora", "head"])
def test_each_mode_writes_a_version_that_reloads_to_the_same_scores(mode, settings, notes):
    args = TrainArgs(mode=mode, max_steps=3, batch_size=8, lora_target_modules=("query", "value"))
    result = train(notes, args, out_dir=settings.data_dir / f"v-{mode}", settings=settings, progress=False)

    folder = result.version_dir
    expected_weights = {"full": "model", "lora": "adapter", "head": "head.safetensors"}[mode]
    assert (folder / expected_weights).exists()
    assert (folder / "tokenizer.json").exists()
    card = ModelCard.load(folder)
    assert card.weights_format == mode and card.problem_type == SINGLE_LABEL
    assert set(card.labels) == {"diabetes", "hypertension", "cancer"}
    assert card.data_fingerprint and card.created_at and card.train_args["mode"] == mode
    for key in ("test", "validation", "before_finetune", "temperature", "train"):
        assert key in card.metrics

    # Reloading must reproduce the test metrics computed in memory during training.
    splits, _ = train_splits_only(notes, args, settings)
    reloaded = Classifier.from_pretrained(folder, settings=settings, precision="fp32")
    test_notes = [Note(text=e.text, note_id=str(i), labels=e.labels) for i, e in enumerate(splits.test)]
    again = evaluate(reloaded, test_notes)["test"]
    assert again["accuracy"] == pytest.approx(card.metrics["test"]["accuracy"])
    assert again["ece"] == pytest.approx(card.metrics["test"]["ece"], abs=1e-5)
    # The uncalibrated ECE is the temperature-1 softmax's, computed here by hand: 15 equal-width
    # bins (k/15, (k+1)/15] of top-label confidence, |accuracy - mean confidence| weighted by share.
    texts = [e.text for e in splits.test]
    logits = reloaded.logits(texts)
    raw = np.exp(logits - logits.max(axis=1, keepdims=True))
    raw /= raw.sum(axis=1, keepdims=True)
    confidence = raw.max(axis=1)
    correct = raw.argmax(axis=1) == np.array([card.labels.index(e.labels[0]) for e in splits.test])
    bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    by_hand = sum((bins == k).mean() * abs(correct[bins == k].mean() - confidence[bins == k].mean())
                  for k in set(bins.tolist()))
    assert card.metrics["test"]["ece_uncalibrated"] == pytest.approx(by_hand, abs=1e-5)

    from healthmon.model.device import bf16_is_fast

    if bf16_is_fast(reloaded.device):
        # The bf16 check describes this version's own test split: a bf16 reload drifts as recorded.
        check = card.metrics["precision_check"]["bf16"]
        assert check["notes"] == len(texts)
        assert check["agreement"] * len(texts) == pytest.approx(round(check["agreement"] * len(texts)))
        bf16 = Classifier.from_pretrained(folder, settings=settings, precision="bf16")
        drift = float(np.abs(bf16.predict_proba(texts) - reloaded.predict_proba(texts)).max())
        assert check["max_drift"] == pytest.approx(drift, rel=0.1, abs=1e-7)


def test_multi_label_tunes_thresholds_and_predicts_label_sets(settings):
    notes = make_notes(16, multi=True)
    args = TrainArgs(mode="lora", multi_label=True, max_steps=3, lora_target_modules=("query", "value"))
    result = train(notes, args, out_dir=settings.data_dir / "ml", settings=settings, progress=False)
    card = result.card
    assert card.problem_type == MULTI_LABEL
    assert set(card.thresholds) == set(card.labels)
    assert all(0.0 < t < 1.0 for t in card.thresholds.values())
    clf = Classifier.from_pretrained(result.version_dir, settings=settings, precision="fp32")
    probs = clf.predict_proba(["polyuria and BP 162/98 mmHg", "biopsy"])
    assert probs.shape == (2, 3)
    # Sigmoid outputs are independent per label: rows need not sum to one.
    assert np.all((probs > 0) & (probs < 1))
    pred = clf.predict("polyuria")
    assert pred.labels == tuple(l for l in card.labels if pred.probabilities[l] >= card.thresholds[l])
    # Tuned thresholds can only help validation F1 compared with a flat 0.5.
    splits, _ = train_splits_only(notes, args, settings)
    val_probs = clf.predict_proba([e.text for e in splits.validation])
    truth = np.array([[label in e.labels for label in card.labels] for e in splits.validation], dtype=int)
    tuned = classification_metrics(val_probs, truth, card.labels, multi_label=True, thresholds=card.thresholds)
    flat = classification_metrics(val_probs, truth, card.labels, multi_label=True)
    assert sum(v["f1"] for v in tuned["per_class"].values()) >= sum(v["f1"] for v in flat["per_class"].values()) - 1e-9


def test_early_stopping_ends_a_run_that_stops_improving_and_logs_curves(settings, notes):
    # A learning rate this small cannot move validation macro-F1, so patience 1 ends the
    # run after the second epoch instead of the sixth.
    args = TrainArgs(mode="head", epochs=6, early_stopping_patience=1, batch_size=16, learning_rate=1e-12)
    result = train(notes, args, out_dir=settings.data_dir / "es", settings=settings, progress=False)
    log = result.card.training_log
    assert sum("eval_macro_f1" in row for row in log) == 2, log
    assert result.metrics["train"]["epochs_run"] == pytest.approx(2.0)
    assert result.metrics["train"]["samples_per_s"] > 0


def test_the_best_epoch_can_be_picked_by_validation_loss(settings, notes):
    args = TrainArgs(mode="head", epochs=3, early_stopping_patience=0, batch_size=16, select_by="loss")
    result = train(notes, args, out_dir=settings.data_dir / "by-loss", settings=settings, progress=False)
    losses = [row["eval_loss"] for row in result.card.training_log if "eval_loss" in row]
    assert len(losses) == 3 and result.metrics["train"]["best_val_loss"] == pytest.approx(min(losses))
    assert "best_val_macro_f1" not in result.metrics["train"]
    with pytest.raises(ConfigError, match="select_by"):
        TrainArgs(select_by="accuracy")


def test_existing_target_is_refused_before_any_training(settings, notes):
    target = settings.data_dir / "taken"
    target.mkdir(parents=True)
    with pytest.raises(ModelError, match="already exists"):
        train(notes, TrainArgs(max_steps=1), out_dir=target, settings=settings, progress=False)


def test_one_label_only_is_a_clear_training_error(settings):
    notes = [Note(text=f"note {i}", note_id=str(i), labels=("diabetes",)) for i in range(20)]
    with pytest.raises(TrainingError) as info:
        train(notes, TrainArgs(max_steps=1), settings=settings, progress=False)
    assert "at least two different labels" in str(info.value)
    assert "diabetes" in str(info.value)


def test_versions_are_listed_newest_first_and_temp_folders_ignored(settings, notes):
    models = settings.resolved_models_dir
    first = train(notes, TrainArgs(mode="head", max_steps=1), settings=settings, progress=False)
    (models / ".tmp-half-written").mkdir()
    second = train(notes, TrainArgs(mode="head", max_steps=1, seed=3), settings=settings, progress=False)
    found = [folder for folder, _ in list_versions(models)]
    assert found == [second.version_dir, first.version_dir]
    card = json.loads((first.version_dir / "card.json").read_text())
    # 12 notes per label, stratified: 20 % (2.4) -> 2 test and 10 % (1.2) -> 1 validation note per label.
    assert card["data_report"]["split_sizes"] == {"train": 27, "validation": 3, "test": 6}


def test_evaluate_counts_rows_it_cannot_score(settings, notes):
    version = train(notes, TrainArgs(mode="head", max_steps=1), out_dir=settings.data_dir / "ev", settings=settings, progress=False).version_dir
    clf = Classifier.from_pretrained(version, settings=settings, precision="fp32")
    extra = [Note(text="no label", note_id="u"), Note(text="stroke", note_id="s", labels=("stroke",)),
             Note(text="two", note_id="t", labels=("cancer", "diabetes"))]
    metrics = evaluate(clf, notes[:5] + extra)
    assert metrics["test"]["n"] == 5
    assert metrics["skipped"] == {"unlabelled": 1, "unknown_label": 1, "multi_label_row": 1}
    assert metrics["unknown_labels"] == ["stroke"]
    with pytest.raises(TrainingError, match="stroke"):
        evaluate(clf, extra[1:2])


def test_bad_base_model_and_bad_lora_targets_are_config_errors(settings, notes, tmp_path):
    from healthmon.config import Settings
    from healthmon.errors import ConfigError

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelError, match="HEALTHMON_BASE_MODEL"):
        train(notes, TrainArgs(max_steps=1), settings=Settings(data_dir=tmp_path, base_model=str(empty)), progress=False)
    with pytest.raises(ConfigError, match="query"):
        train(notes, TrainArgs(max_steps=1, lora_target_modules=("qkv_proj",)), settings=settings, progress=False)


def test_torchrun_with_more_processes_than_gpus_is_refused_before_training(monkeypatch):
    from healthmon.training.trainer import check_one_gpu_per_process

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as refused:
        check_one_gpu_per_process(torch.device("cuda"))
    message = str(refused.value)
    assert "2 processes on this machine and 1 GPU(s) visible" in message
    assert "--nproc_per_node=1" in message and "CUDA_VISIBLE_DEVICES=" in message
    check_one_gpu_per_process(torch.device("cpu"))  # gloo on the CPU: any number of processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    check_one_gpu_per_process(torch.device("cuda"))  # one process, one GPU
