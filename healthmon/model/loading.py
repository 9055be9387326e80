"""Build a classification model from a base, and load one back from a version folder.

A version that continues another (``card.parent_version``) starts from its parent's weights,
so loading it loads the parent first: :func:`load_version_model` and
:func:`initialise_from_version` call each other, one step up the lineage each time.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from healthmon.config import resolve_base_model
from healthmon.errors import ModelError
from healthmon.model.card import ModelCard
from healthmon.model.lineage import resolve_parent
from healthmon.model.pooling import CONFIG_KEY, config_pooling, sequence_classifier_class

HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"
FULL_DIR = "model"


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide the expected "newly initialized weights: classifier" warning while building heads."""
    previous = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # peft calls a transformers helper that warns about its own v6 rename.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def build_model(
    base_model: str,
    labels: Sequence[str],
    problem_type: str,
    dropout: float | None = None,
    pooling: str = "cls",
) -> PreTrainedModel:
    """A base encoder with a fresh classification head for ``labels``.

    Args:
        base_model: folder or Hugging Face id (the bundled marker is resolved here).
        labels: label names, in head order.
        problem_type: single- or multi-label classification.
        dropout: overrides hidden, attention and classifier dropout when given.
        pooling: what the head reads, ``cls`` (the base's own head) or ``mean``
            (:mod:`healthmon.model.pooling`).
    """
    path = resolve_base_model(base_model)
    extra: dict[str, float] = {}
    if dropout is not None:
        extra = {
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
            "classifier_dropout": dropout,
        }
    try:
        config = AutoConfig.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            problem_type=problem_type,
            **extra,
        )
        setattr(config, CONFIG_KEY, pooling)  # checked, and the class chosen, by sequence_classifier_class
        with quiet_transformers():
            model, info = sequence_classifier_class(config).from_pretrained(
                path, config=config, output_loading_info=True
            )
    except (OSError, ValueError) as exc:
        raise ModelError(
            "a local Hugging Face model folder (nothing is downloaded: HF_HUB_OFFLINE=1)",
            f"{base_model!r} could not be loaded ({exc.__class__.__name__})",
            "set HEALTHMON_BASE_MODEL to a folder containing config.json and weights, "
            "or leave it unset to use the bundled all-MiniLM-L6-v2",
        ) from exc
    # Remember which parts the checkpoint lacked (randomly initialised): they are part of
    # the head that must be trained and saved, whatever the base architecture calls them.
    model.config.healthmon_new_modules = sorted(
        {key.rsplit(".", 1)[0] for key in info.get("missing_keys", ()) if not key.endswith("position_ids")}
    )
    return model


def load_tokenizer(base_model: str) -> PreTrainedTokenizerBase:
    """The base model's tokenizer, with the same actionable error as :func:`build_model`."""
    try:
        return AutoTokenizer.from_pretrained(resolve_base_model(base_model))
    except (OSError, ValueError) as exc:
        raise ModelError(
            "tokenizer files in the base model folder",
            f"{base_model!r} has none usable ({exc.__class__.__name__})",
            "set HEALTHMON_BASE_MODEL to a Hugging Face model folder with tokenizer files",
        ) from exc


def new_module_names(model: PreTrainedModel) -> tuple[str, ...]:
    """Modules the base checkpoint did not provide (always includes the classifier)."""
    return tuple(getattr(model.config, "healthmon_new_modules", ()) or ("classifier",))


def head_module_names(model: PreTrainedModel) -> tuple[str, ...]:
    """Parts trained in ``head`` mode: the classifier, the pooler (if any) and anything
    else the base checkpoint lacked (e.g. DistilBERT's pre_classifier)."""
    names = ["classifier"]
    base = getattr(model, model.base_model_prefix, None)
    if base is not None and getattr(base, "pooler", None) is not None:
        names.append(f"{model.base_model_prefix}.pooler")
    names += [n for n in new_module_names(model) if n not in names]
    return tuple(names)


def head_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    prefixes = tuple(f"{name}." for name in head_module_names(model))
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}


def initialise_from_version(model: PreTrainedModel, parent_dir: Path) -> None:
    """Copy a parent version's weights into ``model`` (built with the child's labels).

    The backbone and any extra head layers are copied as they are; classifier rows are
    copied label by label, so old labels keep what they learned and new labels keep the
    fresh rows they were built with.
    """
    parent_card = ModelCard.load(parent_dir)
    parent = load_version_model(parent_dir, parent_card)
    labels = list(model.config.id2label[i] for i in range(model.config.num_labels))
    rows = [(labels.index(label), i) for i, label in enumerate(parent_card.labels) if label in labels]
    own = model.state_dict()
    head = tuple(f"{name}." for name in head_module_names(model) if name == "classifier")
    with torch.no_grad():
        for key, value in parent.state_dict().items():
            if key not in own:
                continue
            if key.startswith(head) and own[key].shape != value.shape:
                for new, old in rows:
                    own[key][new] = value[old]
            elif own[key].shape == value.shape:
                own[key].copy_(value)
            else:
                raise ModelError(
                    "a parent version with the same base architecture",
                    f"{key}: {tuple(value.shape)} in the parent vs {tuple(own[key].shape)} here",
                    "continue from a version trained on the same base model",
                )


def _starting_point(version_dir: Path, card: ModelCard) -> PreTrainedModel:
    """What this version's adapter or head applies to: the base, or its parent's weights."""
    model = build_model(card.base_model, card.labels, card.problem_type, pooling=card.pooling)
    if card.parent_version:
        initialise_from_version(model, resolve_parent(Path(version_dir), card))
    return model


def load_version_model(version_dir: Path, card: ModelCard) -> PreTrainedModel:
    """Rebuild the fine-tuned model described by ``card`` from ``version_dir``.

    LoRA adapters are merged into the base weights, so inference costs the same as a
    full fine-tune.
    """
    fmt = card.weights_format
    try:
        if fmt == "full":
            config = AutoConfig.from_pretrained(str(version_dir / FULL_DIR))
            if config_pooling(config) != card.pooling:
                # A config re-saved by another tool loses the key: rebuilding the other head would
                # score with a random pooler (or none), silently.
                raise ModelError(
                    f"the {card.pooling} pooling recorded in card.json, also in {FULL_DIR}/config.json",
                    f"{CONFIG_KEY}={getattr(config, CONFIG_KEY, None)!r} in the config",
                    f"set \"{CONFIG_KEY}\": \"{card.pooling}\" in {FULL_DIR}/config.json, or retrain the version",
                )
            with quiet_transformers():
                model = sequence_classifier_class(config).from_pretrained(str(version_dir / FULL_DIR), config=config)
        elif fmt == "lora":
            from peft import PeftModel

            base = _starting_point(version_dir, card)
            with quiet_transformers():
                model = PeftModel.from_pretrained(base, str(version_dir / ADAPTER_DIR)).merge_and_unload()
        elif fmt == "head":
            model = _starting_point(version_dir, card)
            state = load_file(str(version_dir / HEAD_FILE))
            missing, unexpected = model.load_state_dict(state, strict=False)
            head_prefixes = tuple(f"{n}." for n in head_module_names(model))
            if unexpected or any(k.startswith(head_prefixes) for k in missing):
                raise ModelError(
                    "head weights matching the base model",
                    f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}",
                    "check that HEALTHMON_BASE_MODEL is the base this version was trained on",
                )
        else:
            raise ModelError("weights_format full, lora or head", repr(fmt), "retrain this version")
    except FileNotFoundError as exc:
        raise ModelError(
            f"the {fmt} weights of this version", f"missing file ({exc})", "retrain the version"
        ) from exc
    logging.getLogger(__name__).debug("loaded %s version from %s", fmt, version_dir)
    model.eval()
    return model
