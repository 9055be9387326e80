"""The fitted-head start of a fine-tune (LP-FT): the layer must compute exactly the regression it was fitted as."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_notes
from sklearn.linear_model import LogisticRegression

from healthmon.errors import ConfigError
from healthmon.model.card import MULTI_LABEL, SINGLE_LABEL
from healthmon.model.loading import build_model, load_tokenizer
from healthmon.training import fitting
from healthmon.training.args import TrainArgs
from healthmon.training.data import Example, targets_for
from healthmon.training.probe import classification_layer, fit_probe_head, head_features
from healthmon.training.trainer import train

CPU = torch.device("cpu")


def _model_probabilities(model: torch.nn.Module, tokenizer, texts: list[str], multi_label: bool) -> np.ndarray:  # noqa: ANN001
    model.eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")).logits
    return (torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).numpy()


def _probe_setup(base: Path, notes: list, labels: tuple[str, ...], problem_type: str):  # noqa: ANN202
    """A fresh tiny model, alternate notes as train / validation, and their frozen features
    standardised as the probe does (computed before the probe changes the head; the
    features it reads do not depend on the head)."""
    examples = [Example(text=n.text, labels=n.labels) for n in notes]
    train_set, validation = examples[::2], examples[1::2]
    model = build_model(str(base), labels, problem_type)
    tokenizer = load_tokenizer(str(base))
    x_train = head_features(model, tokenizer, [e.text for e in train_set], 64, CPU)
    x_val = head_features(model, tokenizer, [e.text for e in validation], 64, CPU)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    return model, tokenizer, train_set, validation, (x_train - mean) / scale, (x_val - mean) / scale


@pytest.mark.parametrize("labels", [("cancer", "diabetes"), ("cancer", "diabetes", "hypertension")])
def test_single_label_probe_layer_gives_the_fitted_regressions_probabilities(tiny_base_model, labels):
    notes = [n for n in make_notes(12) if n.labels[0] in labels]
    model, tokenizer, train_set, validation, z_train, z_val = _probe_setup(tiny_base_model, notes, labels, SINGLE_LABEL)

    info = fit_probe_head(model, tokenizer, train_set, validation, labels, multi_label=False, max_length=64, device=CPU)

    # The same regression fitted independently on standardised features must give the
    # probabilities the model now gives from raw text: the scaling is folded in correctly.
    reference = LogisticRegression(C=info["C"], max_iter=2000).fit(z_train, targets_for(train_set, labels, False))
    got = _model_probabilities(model, tokenizer, [e.text for e in validation], False)
    np.testing.assert_allclose(got, reference.predict_proba(z_val), atol=1e-4)
    assert info["features"] == 32 and info["train_notes"] == len(train_set) and info["val_log_loss"] > 0


def test_multi_label_probe_fits_one_regression_per_label(tiny_base_model):
    labels = ("cancer", "diabetes", "hypertension")
    model, tokenizer, train_set, validation, z_train, z_val = _probe_setup(
        tiny_base_model, make_notes(12, multi=True), labels, MULTI_LABEL)

    info = fit_probe_head(model, tokenizer, train_set, validation, labels, multi_label=True, max_length=64, device=CPU)

    assert set(info["C"]) == set(labels)
    targets = targets_for(train_set, labels, True)
    got = _model_probabilities(model, tokenizer, [e.text for e in validation], True)
    for j, label in enumerate(labels):
        reference = LogisticRegression(C=info["C"][label], max_iter=2000).fit(z_train, targets[:, j])
        np.testing.assert_allclose(got[:, j], reference.predict_proba(z_val)[:, 1], atol=1e-4)


def test_a_fine_tune_starts_from_the_probe_and_records_it(settings, notes):
    # A learning rate too small to move anything: the trained model must rank the test notes
    # exactly as the probe did, so the fine-tune really started from the fitted head.
    args = TrainArgs(mode="full", head_init="probe", max_steps=2, batch_size=8, learning_rate=1e-12, calibrate=False)
    result = train(notes, args, out_dir=settings.data_dir / "probed", settings=settings, progress=False)

    probe = result.metrics["head_init"]
    assert probe["method"] == "probe" and probe["C"] in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    assert probe["test"]["n"] == result.metrics["test"]["n"]
    assert probe["test"]["auroc_macro"] == pytest.approx(result.metrics["test"]["auroc_macro"], abs=1e-9)
    assert result.card.train_args["head_init"] == "probe"
    random_start = train(notes, TrainArgs(mode="full", max_steps=2, batch_size=8), out_dir=settings.data_dir / "random",
                         settings=settings, progress=False)
    assert random_start.metrics["head_init"] == {"method": "random"}


def test_probe_refuses_labels_it_cannot_fit(tiny_base_model):
    tokenizer = load_tokenizer(str(tiny_base_model))
    examples = [Example(text=n.text, labels=n.labels) for n in make_notes(6) if n.labels[0] != "hypertension"]
    single = build_model(str(tiny_base_model), ("cancer", "diabetes", "asthma"), SINGLE_LABEL)
    with pytest.raises(ConfigError, match="no training note labelled 'asthma'"):
        fit_probe_head(single, tokenizer, examples, examples, ("cancer", "diabetes", "asthma"),
                       multi_label=False, max_length=64, device=CPU)
    everywhere = [Example(text=e.text, labels=("cancer",)) for e in examples]
    multi = build_model(str(tiny_base_model), ("cancer",), MULTI_LABEL)
    with pytest.raises(ConfigError, match="every training note carries it"):
        fit_probe_head(multi, tokenizer, everywhere, everywhere, ("cancer",), multi_label=True, max_length=64, device=CPU)


def test_a_head_without_a_final_linear_layer_is_refused_with_the_way_out(tiny_base_model):
    model = build_model(str(tiny_base_model), ("a", "b"), SINGLE_LABEL)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(32, 2))
    with pytest.raises(ConfigError, match="head_init='random'"):
        classification_layer(model)


def test_bad_head_init_settings_are_refused():
    with pytest.raises(ConfigError, match="random or probe"):
        TrainArgs(head_init="lstsq")
    with pytest.raises(ConfigError, match="its trained head is kept"):
        TrainArgs(head_init="probe", init_from="/models/v1")


def test_a_fine_tune_that_never_beats_its_fitted_head_on_validation_is_not_kept(settings, notes, monkeypatch):
    # A learning rate of 0.5 wrecks the encoder in one epoch; the probe (the "epoch 0") must win.
    # fp32 here: this random 32-wide BERT's pooled features barely vary, so the probe's weights
    # are huge and bf16 autocast's rounding of the features swamps the Trainer's loss of the start;
    # the test is about which start is kept, not about bf16.
    monkeypatch.setattr(fitting, "train_in_bf16", lambda device: False)
    args = TrainArgs(mode="full", head_init="probe", epochs=1, batch_size=8, learning_rate=0.5,
                     select_by="loss", calibrate=False, early_stopping_patience=0)
    result = train(notes, args, out_dir=settings.data_dir / "wrecked", settings=settings, progress=False)

    probe = result.metrics["head_init"]
    epoch_losses = [row["eval_loss"] for row in result.card.training_log if "eval_loss" in row]
    # The trainer's own validation loss of the start is the regression's log-loss it was picked by.
    assert probe["val_loss"] == pytest.approx(probe["val_log_loss"], abs=1e-3)
    assert probe["val_loss"] < min(epoch_losses), "the setting no longer wrecks the fine-tune"
    assert probe["kept_instead_of_fine_tune"] is True
    assert result.metrics["train"]["best_val_loss"] == probe["val_loss"]
    assert result.metrics["test"]["auroc_macro"] == pytest.approx(probe["test"]["auroc_macro"], abs=1e-9)


def test_lora_keeps_the_probe_through_save_and_reload(settings, notes):
    # LoRA (the default mode) wraps the model after the probe: the fitted head must reach the
    # adapter's saved head, and a restored start must be what a reload scores.
    from healthmon.model.classifier import Classifier, calibrated_probabilities
    from healthmon.training.metrics import classification_metrics
    from healthmon.training.trainer import train_splits_only

    args = TrainArgs(mode="lora", head_init="probe", epochs=1, batch_size=8, learning_rate=0.5, select_by="loss",
                     calibrate=False, early_stopping_patience=0, lora_target_modules=("query", "value"))
    result = train(notes, args, out_dir=settings.data_dir / "lora-probe", settings=settings, progress=False)
    assert result.metrics["head_init"]["kept_instead_of_fine_tune"] is True

    splits, _ = train_splits_only(notes, args, settings)
    reloaded = Classifier.from_pretrained(result.version_dir, settings=settings, precision="fp32")
    probs = calibrated_probabilities(reloaded.logits([e.text for e in splits.test]), 1.0, False)
    again = classification_metrics(probs, targets_for(splits.test, reloaded.card.labels, False), reloaded.card.labels,
                                   multi_label=False)
    assert again["auroc_macro"] == pytest.approx(result.metrics["head_init"]["test"]["auroc_macro"], abs=1e-9)
    assert again["ece"] == pytest.approx(result.metrics["head_init"]["test"]["ece"], abs=1e-6)
