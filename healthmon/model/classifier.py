"""Calibrated inference over a fine-tuned model version (Hugging Face habits).

``Classifier.from_pretrained(version_dir)`` then ``predict`` / ``predict_proba`` with one
string or a list. Long notes are split into overlapping windows, every window is scored,
and the window logits are aggregated per note before calibration:

* single-label: the token-weighted mean of window logits. The label describes the whole
  note, so every window is evidence about the same class and longer windows weigh more.
* multi-label: the per-label maximum over windows. A condition mentioned once in a long
  note is still the patient's condition; averaging would dilute it below threshold.
* regression: the token-weighted mean of the windows' outputs, as single-label: each window
  is an estimate of the same value for the whole note. The mean is taken on the standardised
  output and the card's target mean and standard deviation are applied after (the same thing,
  the map being linear).

Calibration (temperature, thresholds) is fitted on these aggregated logits, so the
aggregation is part of what the temperature corrects.
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, overload

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from healthmon.config import Settings
from healthmon.errors import ModelError
from healthmon.model.card import MULTI_LABEL, REGRESSION, ModelCard
from healthmon.model.device import pick_device, resolve_precision
from healthmon.model.loading import load_version_model
from healthmon.types import Prediction


@dataclass(frozen=True)
class Windows:
    """Token windows of a batch of notes: ``note_index[i]`` owns ``input_ids[i]``."""

    input_ids: list[list[int]]
    note_index: np.ndarray
    offsets: list[list[tuple[int, int]]]


def encode_windows(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, stride: int
) -> Windows:
    """Tokenize notes into windows of at most ``max_length`` tokens sharing ``stride`` tokens."""
    stride = min(stride, max_length // 2)
    enc = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    note_index = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    _check_windows_cover_notes(tokenizer, texts, enc["input_ids"], note_index, stride)
    return Windows(input_ids=enc["input_ids"], note_index=note_index, offsets=enc["offset_mapping"])


def _check_windows_cover_notes(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                               window_ids: list[list[int]], note_index: np.ndarray, stride: int) -> None:
    """Refuse to score a note whose windows miss some of its tokens. transformers 5.17 returns
    one overflow window only (a 729-token note came back as 64 + 21 tokens, seen on a GPU
    machine's install), so the rest of a long note would be scored as if it were not there.

    Each window after a note's first repeats the ``stride`` tokens before it, so a note's
    windows hold ``sum(content) - stride * (windows - 1)`` of its tokens."""
    whole = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]  # untruncated
    lengths = np.array([len(ids) for ids in whole])
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    content = np.bincount(note_index, weights=[len(ids) - specials for ids in window_ids], minlength=len(texts))
    windows = np.bincount(note_index, minlength=len(texts))
    covered = content - stride * np.maximum(windows - 1, 0)
    short = np.flatnonzero(covered < lengths)
    if short.size:
        import transformers

        first = int(short[0])
        raise ModelError(
            "windows covering every token of each note",
            f"{short.size} note(s) of {len(texts)} cut short (one has {int(covered[first])} of its {lengths[first]} "
            f"tokens in its windows) by transformers {transformers.__version__}",
            "install the transformers version requirements.txt pins",
        )


def check_tokenizer_windows(tokenizer: PreTrainedTokenizerBase, card: ModelCard) -> None:
    """Refuse a tokenizer that cannot window long notes, when a version loads: one that cuts them
    short (transformers 5.17), or a slow one without offsets or overflow windows. The dashboard then
    says so at start rather than on the first long note of a shift."""
    try:
        encode_windows(tokenizer, [" ".join(["note"] * 3 * card.max_length)], card.max_length, card.window_stride)
    except (NotImplementedError, KeyError) as exc:  # a slow (Python) tokenizer: no offsets, no overflow mapping
        raise ModelError("a fast tokenizer (offsets and overflow windows)",
                         f"{type(tokenizer).__name__}: {exc.__class__.__name__} {exc}",
                         "install the `tokenizers` package requirements.txt pins and reload the version") from exc


def aggregate_windows(
    window_logits: np.ndarray, note_index: np.ndarray, weights: np.ndarray, n_notes: int, multi_label: bool
) -> np.ndarray:
    """Note-level logits from window logits (see module docstring for why these rules)."""
    out = np.zeros((n_notes, window_logits.shape[1]), dtype=np.float64)
    if multi_label:
        out[:] = -np.inf
        np.maximum.at(out, note_index, window_logits)
        return out
    totals = np.zeros(n_notes, dtype=np.float64)
    np.add.at(out, note_index, window_logits * weights[:, None])
    np.add.at(totals, note_index, weights)
    return out / totals[:, None]


#: Most padding a forward pass may carry, as a share of its real tokens. On CPU a pass costs about
#: the same per token from 1 to 16 windows, so padding is pure waste; a few (e.g. the API's
#: micro-batches of notes of any length) are better split into passes of similar lengths.
MAX_PADDING = 0.2


def length_batches(sorted_lengths: np.ndarray, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each forward pass over windows sorted longest first: at most
    ``batch_size`` windows, and no more padding than :data:`MAX_PADDING` of the real tokens."""
    batches, start = [], 0
    total = len(sorted_lengths)
    while start < total:
        stop, real = start + 1, int(sorted_lengths[start])
        longest = real
        while stop < total and stop - start < batch_size:
            candidate = real + int(sorted_lengths[stop])
            if longest * (stop - start + 1) > (1 + MAX_PADDING) * candidate:
                break
            real, stop = candidate, stop + 1
        batches.append((start, stop))
        start = stop
    return batches


def calibrated_probabilities(logits: np.ndarray, temperature: float, multi_label: bool) -> np.ndarray:
    """Softmax (single-label) or sigmoid (multi-label) of ``logits / temperature``."""
    scaled = torch.as_tensor(logits, dtype=torch.float64) / temperature
    probs = torch.sigmoid(scaled) if multi_label else torch.softmax(scaled, dim=-1)
    return probs.numpy()


def _placed(device: torch.device) -> torch.device:
    """``cuda`` as the index .to() would use (the current device), so it compares with ``cuda:N``."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class Classifier:
    """A fine-tuned model version ready for calibrated prediction.

    Args:
        model: a sequence-classification model (already merged if it was LoRA).
        tokenizer: its tokenizer.
        card: the version's card (labels, problem type, temperature, thresholds).
        name: version name shown to users and stored with predictions.
        device / precision / batch_size: see :class:`healthmon.config.Settings`.
        tokenizer_checked: :func:`check_tokenizer_windows` already passed for this tokenizer
            and card (``from_pretrained`` runs it before loading the weights); else it runs here.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        card: ModelCard,
        *,
        name: str = "in-memory",
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int = 8,
        tokenizer_checked: bool = False,
    ) -> None:
        self.card = card
        self.name = name
        if not tokenizer_checked:  # from_pretrained checks before the weights load
            check_tokenizer_windows(tokenizer, card)
        self.tokenizer = tokenizer
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device, card.metrics.get("precision_check", {}).get("bf16"))
        self.batch_size = batch_size
        # .to() moves a module in place: a classifier on another device (int8 on the CPU beside a
        # GPU one) took the GPU classifier's model away from under it (seen on an H200). A model
        # already on an accelerator is copied instead; one on the CPU (every fresh load) is moved.
        held_on = _placed(next(model.parameters()).device)
        if held_on.type != "cpu" and held_on != _placed(self.device):
            model = copy.deepcopy(model)
        model = model.to(self.device).eval()
        # Explanations need gradients, which int8 dynamic-quantized layers do not have.
        self.float_model = model
        if self.precision == "int8":
            # A copy, so the caller's fp32 model stays usable (e.g. training keeps evaluating it).
            model = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
            )
        self.model = model
        self.last_timing: dict[str, float] = {}
        # Unique per loaded classifier: caches keyed on it can never serve another model's
        # results (names repeat for in-memory models, and id() values are reused).
        self.instance_id = uuid.uuid4().hex

    @classmethod
    def from_pretrained(
        cls,
        version_dir: str | Path,
        *,
        settings: Settings | None = None,
        device: str | None = None,
        precision: str | None = None,
        batch_size: int | None = None,
    ) -> "Classifier":
        """Load a version folder written by training.

        Args:
            version_dir: the folder holding ``card.json``.
            settings: defaults for device, precision and batch size.
        """
        settings = settings or Settings()
        folder = Path(version_dir)
        card = ModelCard.load(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise ModelError(
                "tokenizer files in the version folder",
                f"none usable in {folder} ({exc.__class__.__name__})",
                "retrain the version; tokenizer files are written beside card.json",
            ) from exc
        check_tokenizer_windows(tokenizer, card)  # before the weights load: a broken install fails fast
        model = load_version_model(folder, card)
        return cls(
            model,
            tokenizer,
            card,
            name=folder.name,
            device=device or settings.device,
            precision=precision or settings.precision,
            batch_size=batch_size or settings.batch_size,
            tokenizer_checked=True,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    @property
    def multi_label(self) -> bool:
        return self.card.problem_type == MULTI_LABEL

    @property
    def regression(self) -> bool:
        return self.card.problem_type == REGRESSION

    def logits(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Uncalibrated note-level logits, shape (n_notes, n_labels)."""
        return self._score(list(texts), progress)[0]

    def _score(self, texts: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """Note-level logits and the number of windows each note was split into."""
        if not texts:
            return np.zeros((0, len(self.labels))), np.zeros(0, dtype=np.int64)
        started = time.perf_counter()
        windows = encode_windows(self.tokenizer, texts, self.card.max_length, self.card.window_stride)
        tokenized = time.perf_counter()
        lengths = np.array([len(ids) for ids in windows.input_ids])
        # Longest first, so padding inside a batch is small and the first batch shows
        # the worst-case memory at once rather than at the end.
        order = np.argsort(-lengths, kind="stable")
        window_logits = np.zeros((len(order), len(self.labels)), dtype=np.float32)
        batches = length_batches(lengths[order], self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="predict", unit="batch")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            for start, stop in batches:
                idx = order[start:stop]
                batch = self.tokenizer.pad(
                    {"input_ids": [windows.input_ids[i] for i in idx]}, return_tensors="pt"
                )
                batch = {k: v.to(self.device) for k, v in batch.items()}
                out = self.model(**batch).logits
                window_logits[idx] = out.float().cpu().numpy()
        self.last_timing = {
            "tokenize_s": tokenized - started,
            "model_s": time.perf_counter() - tokenized,
            "windows": float(len(order)),
            "tokens": float(lengths.sum()),
        }
        note_logits = aggregate_windows(
            window_logits, windows.note_index, lengths.astype(np.float64), len(texts), self.multi_label
        )
        return note_logits, np.bincount(windows.note_index, minlength=len(texts))

    @overload
    def predict_proba(self, texts: str, *, progress: bool = ...) -> np.ndarray: ...
    @overload
    def predict_proba(self, texts: Sequence[str], *, progress: bool = ...) -> np.ndarray: ...

    def predict_proba(self, texts: str | Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Calibrated probabilities: shape (n_labels,) for one string, (n, n_labels) for a list."""
        if self.regression:
            raise ModelError("a classification version for probabilities",
                             f"{self.name}, a regression version (it predicts {self.labels[0]})",
                             "use predict() or predict_values() for its predicted values")
        single = isinstance(texts, str)
        probs, _ = self._probabilities_and_windows([texts] if single else list(texts), progress)
        return probs[0] if single else probs

    def _probabilities_and_windows(self, texts: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray]:
        logits, counts = self._score(texts, progress)
        if self.regression:
            return self.values_from_outputs(logits)[:, None], counts
        return calibrated_probabilities(logits, self.card.temperature, self.multi_label), counts

    def values_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """A regression version's predicted values from its (standardised) note-level outputs, shape (n,)."""
        return np.asarray(outputs, dtype=np.float64)[:, 0] * self.card.target_std + self.card.target_mean

    def predict_values(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """A regression version's predicted value per note, shape (n,), in the target's own units."""
        if not self.regression:
            raise ModelError("a regression version for predicted values", f"{self.name}, a {self.card.problem_type} "
                             "version", "use predict_proba() for a classification version's probabilities")
        return self.values_from_outputs(self._score(list(texts), progress)[0])

    def scores(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """What a clinician reads per note and output, shape (n, n_labels): calibrated probabilities,
        or for a regression version the predicted value in one column (what explanations explain)."""
        return self._probabilities_and_windows(list(texts), progress)[0]

    def decide(self, probs: np.ndarray) -> tuple[str, ...]:
        """Predicted label(s) for one row of calibrated probabilities."""
        if not self.multi_label:
            return (self.labels[int(np.argmax(probs))],)
        chosen = tuple(
            label for label, p in zip(self.labels, probs) if p >= self.card.thresholds.get(label, 0.5)
        )
        return chosen

    @overload
    def predict(self, texts: str, *, progress: bool = ...) -> Prediction: ...
    @overload
    def predict(self, texts: Sequence[str], *, progress: bool = ...) -> list[Prediction]: ...

    def predict(self, texts: str | Sequence[str], *, progress: bool = False) -> Prediction | list[Prediction]:
        """Predictions with calibrated probabilities per label and the decided label(s) (a regression
        version: the predicted value, see :class:`~healthmon.types.Prediction`)."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        probs, counts = self._probabilities_and_windows(batch, progress)
        if self.regression:
            # Stored like a prediction of one label: the target's name, scored with the value.
            target = self.labels[0]
            preds = [Prediction(probabilities={target: float(row[0])}, labels=(target,), model_version=self.name,
                                problem_type=self.card.problem_type, windows=int(n), value=float(row[0]))
                     for row, n in zip(probs, counts)]
            return preds[0] if single else preds
        preds = [
            Prediction(
                probabilities={label: float(p) for label, p in zip(self.labels, row)},
                labels=self.decide(row),
                model_version=self.name,
                problem_type=self.card.problem_type,
                windows=int(n),
            )
            for row, n in zip(probs, counts)
        ]
        return preds[0] if single else preds
