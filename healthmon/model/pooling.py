"""What the classification head reads: BERT's pooled [CLS] vector, or the mean of the tokens.

``AutoModelForSequenceClassification`` gives a BERT base the head BERT was pre-trained with:
``classifier(dropout(tanh(dense(h_[CLS]))))``. all-MiniLM-L6-v2, the bundled base, was
trained as a sentence encoder with *mean* pooling; its pooler was never trained for that,
and its [CLS] vector barely varies between sentences built from one template. Measured on
the PhysioNet ICU summaries (benchmarks/RESULTS.md): the pooled vector's median standard
deviation per feature is 0.010, and logistic regression on it scores 0.78-0.79 AUROC on
splits 2 and 3 where the mean of the last layer's token states scores 0.80-0.815. The synthetic
home-vitals summaries of the demo were scored almost alike by every pooled-[CLS] model trained
on them. ``pooling="mean"`` gives the head the masked mean of the last layer instead (the
pooler is dropped); everything else (LoRA, calibration, Captum, save and load) is unchanged.

A new model reads the mean where its base was trained for one (:func:`base_model_pooling`: the
bundled base) and [CLS] otherwise. Measured with the default LoRA recipe (benchmarks/RESULTS.md,
2026-11-30): Symptom2Disease test accuracy 0.996 against 0.983 with [CLS], Medical Abstracts
macro-F1 0.638 against 0.557.

The choice is stored in the model's config (``healthmon_pooling``) and in the model card, and
every load goes through :func:`sequence_classifier_class`, so a mean-pooled version is never
rebuilt as a [CLS] one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification, PretrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput

from healthmon.errors import ModelError

POOLINGS: tuple[str, ...] = ("cls", "mean")
CONFIG_KEY = "healthmon_pooling"


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of each sequence's token states over its real (unpadded) tokens: (batch, hidden)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MeanPooledBertForSequenceClassification(BertForSequenceClassification):
    """BERT whose classifier reads the attention-masked mean of the last layer's token states."""

    # The loss below is a plain batch mean: the Trainer must scale it for gradient accumulation
    # itself rather than pass num_items_in_batch (which **kwargs would otherwise advertise).
    accepts_loss_kwargs = False

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.bert.pooler = None  # its weights are in the checkpoint but unused: not trained, not saved

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        kwargs.pop("return_dict", None)  # peft passes it; the output below is always a dataclass
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        logits = self.classifier(self.dropout(masked_mean(outputs.last_hidden_state, attention_mask)))
        loss = None
        if labels is not None:
            # The trainer always sets problem_type (single- or multi-label classification, or
            # regression, whose own loss, MSE or Huber, the trainer passes to the Trainer instead).
            if self.config.problem_type == "multi_label_classification":
                loss = BCEWithLogitsLoss()(logits, labels.to(logits.dtype))
            elif self.config.problem_type == "regression":
                loss = MSELoss()(logits.view(-1), labels.view(-1).to(logits.dtype))
            else:
                loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


def check_pooling(pooling: str, config: PretrainedConfig) -> None:
    if pooling not in POOLINGS:
        raise ModelError("pooling cls or mean", repr(pooling), "use --pooling mean or --pooling cls, or leave it unset")
    if pooling == "mean" and config.model_type != "bert":
        raise ModelError(
            "a BERT-family base model for mean pooling (model_type 'bert', e.g. the bundled all-MiniLM-L6-v2)",
            f"model_type {config.model_type!r}",
            "use --pooling cls with this base model",
        )


def base_model_pooling(base_model_dir: str) -> str:
    """The pooling a new model on this base defaults to: ``mean`` where the base is a BERT-family
    sentence-transformers model that was trained with mean pooling (its ``1_Pooling/config.json``
    says ``pooling_mode_mean_tokens``, as the bundled all-MiniLM-L6-v2's does), else ``cls``, the
    head the base's own ``AutoModelForSequenceClassification`` reads. A hub id or a folder without
    that file is ``cls``: nothing says it was trained for a mean."""
    folder = Path(base_model_dir)
    try:
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return "cls"
    return "mean" if pooling.get("pooling_mode_mean_tokens") and model_type == "bert" else "cls"


def config_pooling(config: PretrainedConfig) -> str:
    """The pooling recorded in a model config; configs from before the choice are ``cls``."""
    return getattr(config, CONFIG_KEY, None) or "cls"


def sequence_classifier_class(config: PretrainedConfig) -> Any:  # noqa: ANN401 (a transformers auto class or ours)
    """The class to build or load a classifier with, from the pooling recorded in ``config`` (checked here)."""
    pooling = config_pooling(config)
    check_pooling(pooling, config)
    return MeanPooledBertForSequenceClassification if pooling == "mean" else AutoModelForSequenceClassification
