"""The mean-pooled head: the masked mean it reads, and every path a version takes (train, save,
reload in each weights format, continue, explain) keeping it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DistilBertConfig

from healthmon.errors import ConfigError, ModelError
from healthmon.model.card import SINGLE_LABEL
from healthmon.model.classifier import Classifier, calibrated_probabilities
from healthmon.model.loading import build_model, load_tokenizer
from healthmon.model.pooling import MeanPooledBertForSequenceClassification, check_pooling
from healthmon.training.args import TrainArgs
from healthmon.training.metrics import classification_metrics
from healthmon.training.trainer import targets_for, train, train_splits_only

LABELS = ("cancer", "diabetes", "hypertension")


def test_the_head_reads_the_masked_mean_of_the_last_layer_and_padding_changes_nothing(tiny_base_model):
    model = build_model(str(tiny_base_model), LABELS, SINGLE_LABEL, pooling="mean").eval()
    tokenizer = load_tokenizer(str(tiny_base_model))
    assert isinstance(model, MeanPooledBertForSequenceClassification) and model.bert.pooler is None
    texts = ["fasting glucose 160 and thirst", "a much longer note about blood pressure readings at home this week"]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        padded = model(**batch).logits
        alone = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in texts])
        one = tokenizer([texts[0]], return_tensors="pt")
        hidden = model.bert(**one).last_hidden_state
        by_hand = model.classifier(hidden.mean(dim=1))
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # the first text really is padded
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[:1], by_hand, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["full", "lora", "head"])
def test_each_weights_format_reloads_as_the_mean_pooled_model_it_was_trained_as(settings, notes, mode):
    # LoRA with its default targets (query, key, value and every "dense", which the dropped pooler also had).
    args = TrainArgs(mode=mode, pooling="mean", epochs=1, batch_size=8, calibrate=False, early_stopping_patience=0)
    result = train(notes, args, out_dir=settings.data_dir / f"mean-{mode}", settings=settings, progress=False)
    assert result.card.pooling == "mean" and result.card.train_args["pooling"] == "mean"
    if mode == "full":
        config = json.loads((result.version_dir / "model" / "config.json").read_text(encoding="utf-8"))
        assert config["healthmon_pooling"] == "mean"

    reloaded = Classifier.from_pretrained(result.version_dir, settings=settings, precision="fp32")
    assert isinstance(reloaded.model, MeanPooledBertForSequenceClassification)
    splits, _ = train_splits_only(notes, args, settings)
    probs = calibrated_probabilities(reloaded.logits([e.text for e in splits.test]), 1.0, False)
    again = classification_metrics(probs, targets_for(splits.test, reloaded.card.labels, False), reloaded.card.labels,
                                   multi_label=False)
    # The test figures the trainer recorded came from the in-memory model: a reload as a
    # [CLS] model (or with the pooler back) would score differently.
    assert again["auroc_macro"] == pytest.approx(result.metrics["test"]["auroc_macro"], abs=1e-9)
    assert again["ece"] == pytest.approx(result.metrics["test"]["ece"], abs=1e-6)


def test_a_continued_version_keeps_its_parents_pooling_and_a_switch_is_refused(settings, notes):
    parent = train(notes, TrainArgs(mode="lora", pooling="mean", max_steps=2, batch_size=8, calibrate=False),
                   out_dir=settings.data_dir / "parent", settings=settings, progress=False)
    child = train(notes, TrainArgs(mode="lora", max_steps=2, batch_size=8, calibrate=False,
                                   init_from=str(parent.version_dir)),
                  out_dir=settings.data_dir / "child", settings=settings, progress=False)
    assert child.card.pooling == "mean" and child.card.train_args["pooling"] == "mean"
    reloaded = Classifier.from_pretrained(child.version_dir, settings=settings, precision="fp32")
    assert isinstance(reloaded.model, MeanPooledBertForSequenceClassification)
    # Rebuilt through the parent (its weights, then the child's adapter): the child's recorded
    # test figures must come back.
    splits, _ = train_splits_only(notes, TrainArgs(mode="lora"), settings)
    probs = calibrated_probabilities(reloaded.logits([e.text for e in splits.test]), 1.0, False)
    again = classification_metrics(probs, targets_for(splits.test, reloaded.card.labels, False), reloaded.card.labels,
                                   multi_label=False)
    assert again["ece"] == pytest.approx(child.metrics["test"]["ece"], abs=1e-6)
    explicit = train(notes, TrainArgs(mode="lora", pooling="mean", max_steps=1, batch_size=8, calibrate=False,
                                      init_from=str(parent.version_dir)),
                     out_dir=settings.data_dir / "explicit", settings=settings, progress=False)
    assert explicit.card.pooling == "mean"
    with pytest.raises(ConfigError, match="pooling of the version being continued"):
        train(notes, TrainArgs(mode="lora", pooling="cls", max_steps=2, init_from=str(parent.version_dir)),
              out_dir=settings.data_dir / "switched", settings=settings, progress=False)
    assert not (settings.data_dir / "switched").exists()


def test_a_new_model_reads_the_mean_where_its_base_was_trained_for_one(settings, notes, tiny_base_model, tmp_path):
    import shutil

    from healthmon.config import bundled_base_model_dir
    from healthmon.model.pooling import base_model_pooling

    assert base_model_pooling(str(bundled_base_model_dir())) == "mean"  # all-MiniLM-L6-v2's 1_Pooling says so
    assert base_model_pooling(str(tiny_base_model)) == "cls"  # no sentence-transformers pooling file
    assert base_model_pooling("some-org/a-hub-id") == "cls"
    encoder = Path(shutil.copytree(tiny_base_model, tmp_path / "sentence-encoder"))
    (encoder / "1_Pooling").mkdir()
    (encoder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    on_encoder = settings.model_copy(update={"base_model": str(encoder)})
    default = train(notes, TrainArgs(mode="lora", max_steps=1, batch_size=8, calibrate=False),
                    out_dir=settings.data_dir / "encoder-default", settings=on_encoder, progress=False)
    assert default.card.pooling == "mean" and default.card.train_args["pooling"] == "mean"
    reloaded = Classifier.from_pretrained(default.version_dir, settings=on_encoder).model
    assert any(isinstance(module, MeanPooledBertForSequenceClassification) for module in reloaded.modules())
    asked = train(notes, TrainArgs(mode="lora", pooling="cls", max_steps=1, batch_size=8, calibrate=False),
                  out_dir=settings.data_dir / "encoder-cls", settings=on_encoder, progress=False)
    assert asked.card.pooling == "cls"


def test_a_new_model_on_a_base_without_a_mean_pooling_file_reads_the_pooled_cls_vector(settings, notes):
    from transformers import BertForSequenceClassification

    result = train(notes, TrainArgs(mode="full", max_steps=1, batch_size=8, calibrate=False),
                   out_dir=settings.data_dir / "default", settings=settings, progress=False)
    assert result.card.pooling == "cls" and result.card.train_args["pooling"] == "cls"
    config = json.loads((result.version_dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["healthmon_pooling"] == "cls"
    model = Classifier.from_pretrained(result.version_dir, settings=settings).model
    assert type(model) is BertForSequenceClassification and model.bert.pooler is not None


def test_a_full_version_whose_config_lost_its_pooling_is_refused(settings, notes):
    result = train(notes, TrainArgs(mode="full", pooling="mean", max_steps=1, batch_size=8, calibrate=False),
                   out_dir=settings.data_dir / "lost", settings=settings, progress=False)
    path = result.version_dir / "model" / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    del config["healthmon_pooling"]  # as another tool re-saving the config would
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelError, match="mean pooling recorded in card.json"):
        Classifier.from_pretrained(result.version_dir, settings=settings)


def test_mean_pooling_is_refused_where_it_is_not_built(tiny_base_model):
    with pytest.raises(ModelError, match="BERT-family base model"):
        check_pooling("mean", DistilBertConfig())
    with pytest.raises(ModelError, match="pooling cls or mean"):
        build_model(str(tiny_base_model), LABELS, SINGLE_LABEL, pooling="max")
    with pytest.raises(ConfigError, match="pooling"):
        TrainArgs(pooling="max")  # type: ignore[arg-type]


def test_a_mean_pooled_score_is_explained_with_integrated_gradients(settings, notes):
    from healthmon.explain.integrated import explain

    result = train(notes, TrainArgs(mode="full", pooling="mean", max_steps=3, batch_size=8, calibrate=False),
                   out_dir=settings.data_dir / "explained", settings=settings, progress=False)
    classifier = Classifier.from_pretrained(result.version_dir, settings=settings, precision="fp32")
    text = notes[0].text
    explanation = explain(classifier, text, tolerance=0.01)
    # The explained probability is the mean-pooled model's own score (the inputs_embeds path
    # Captum integrates along gives what predict gives), and the integration converged.
    column = list(classifier.labels).index(explanation.target)
    assert explanation.probability == pytest.approx(float(classifier.predict_proba(text)[column]), abs=1e-5)
    assert explanation.converged and abs(explanation.delta) <= 0.01
    assert np.isfinite([w.score for w in explanation.words]).all() and any(w.score != 0 for w in explanation.words)
