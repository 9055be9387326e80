"""Integrated gradients over a note's word embeddings, with adaptive steps and long notes.

What is explained is exactly the score a clinician sees: the calibrated probability of one
label for the whole note. Every window the note is split into (the same windows
``Classifier.predict`` uses) moves along the same straight path from the baseline at
once, their logits are aggregated with the same rule as prediction, and the temperature
and softmax/sigmoid are applied on top. So the attributions of all windows together add up
to f(note) − f(baseline), and a word that two overlapping windows share gets the sum of
both windows' contributions: one attribution per word.

Speed, in order of what it buys on a CPU:

* few steps: Gauss-Legendre quadrature, starting at ``start_steps`` and doubling only for
  notes whose |delta| is over the tolerance (most converge in the first round);
* bf16 autocast on hardware with native bf16, checked by the same delta (the endpoints
  are always the classifier's own scores, so bf16 error counts against the tolerance and a
  note that misses it is redone in fp32);
* one forward of the note and its baseline gives both endpoints, the prediction and the
  default target, and Captum's own two endpoint passes are skipped (see ``_forward``);
* steps and notes share batches sized in tokens, the same budget on short and long notes;
* model weights do not require gradients while explaining, so autograd only tracks the
  path through the activations.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients

from healthmon.errors import ModelError
from healthmon.explain.words import token_word_index, word_spans
from healthmon.model.classifier import encode_windows
from healthmon.model.device import bf16_is_fast
from healthmon.types import Explanation, TokenAttribution, WordAttribution

if TYPE_CHECKING:
    from healthmon.model.classifier import Classifier

BASELINES = ("pad", "mask")
PRECISIONS = ("auto", "fp32", "bf16")
# A note longer than this many windows (~12k tokens at 256/64) would hold every window's
# activations for one integration step at once; ask for it to be split instead.
MAX_WINDOWS = 48


@dataclass(frozen=True)
class ExplainOptions:
    """Knobs of :func:`explain` (all have defaults measured in ``benchmarks/explain_bench.py``).

    Attributes:
        tolerance: accepted |delta|, absolute, in probability units. Absolute because the
            score is a probability a clinician reads on a 0-1 scale: an error of 0.05 is
            equally visible whatever f(x) − f(baseline) is, while a relative tolerance
            explodes when that difference is small (explaining a label the note does not
            support) and would spend the step budget where nothing visible changes.
            :attr:`Explanation.relative_delta` reports the relative figure too.
        start_steps / max_steps: Gauss-Legendre steps of the first round / the cap; steps
            double between rounds.
        baseline: ``pad`` (default) or ``mask`` fills every non-special token of the baseline.
        precision: ``auto`` (bf16 where the hardware has native bf16), ``fp32`` or ``bf16``.
        batch_tokens: tokens per forward/backward chunk (steps x windows x length);
            ``None`` picks 4,096 on CPU (measured best) and 32,768 on GPUs.
        faithfulness: also compute comprehensiveness/sufficiency AOPC (adds ~11 forwards).
        baseline_sensitivity: also explain with the other baseline and report agreement.
        seed: for the random-words reference of the faithfulness check.
    """

    tolerance: float = 0.05
    start_steps: int = 8
    max_steps: int = 64
    baseline: str = "pad"
    precision: str = "auto"
    batch_tokens: int | None = None
    faithfulness: bool = True
    baseline_sensitivity: bool = False
    seed: int = 13

    def validated(self) -> "ExplainOptions":
        if self.baseline not in BASELINES:
            raise ModelError("baseline 'pad' or 'mask'", repr(self.baseline), "pass baseline='pad' or 'mask'")
        if self.precision not in PRECISIONS:
            raise ModelError("precision auto, fp32 or bf16", repr(self.precision), "pass one of those")
        if not (0 < self.tolerance < 1):
            raise ModelError("a tolerance between 0 and 1 (probability units)", repr(self.tolerance), "e.g. 0.05")
        if not (1 <= self.start_steps <= self.max_steps <= 1024):
            raise ModelError(
                "1 <= start_steps <= max_steps <= 1024",
                f"start_steps={self.start_steps}, max_steps={self.max_steps}",
                "e.g. start_steps=8, max_steps=64",
            )
        return self


@dataclass
class _Note:
    """Per-note working state while its group is integrated."""

    index: int
    text: str
    window_ids: list[list[int]]
    window_offsets: list[list[tuple[int, int]]]
    target: int = -1
    probability: float = 0.0
    baseline_probability: float = 0.0
    token_scores: list[np.ndarray] | None = None
    delta: float = float("inf")
    steps: int = 0
    precision: str = "fp32"
    steps_tried: tuple[int, ...] = ()

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.window_ids)


@dataclass(frozen=True)
class _Batch:
    ids: torch.Tensor
    baseline: torch.Tensor
    mask: torch.Tensor
    rows_of_note: list[list[int]]
    weights: torch.Tensor


_CACHE: OrderedDict[tuple, Explanation] = OrderedDict()
_CACHE_SIZE = 512
_CACHE_LOCK = threading.Lock()
# One explanation at a time per model: weights' requires_grad is switched off while it runs.
_MODEL_LOCKS: dict[int, threading.Lock] = {}


def _cache_key(classifier: "Classifier", text: str, target: str | None, options: ExplainOptions) -> tuple:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    # The version name alone is not unique for in-memory models (tests, training's
    # evaluation), so the model object's identity is part of the key too.
    return (classifier.name, id(classifier.model), digest, target, options)


def clear_cache() -> None:
    """Forget every cached explanation (e.g. after a model was retrained in place)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def explain(
    classifier: "Classifier", text: str, target: str | None = None, *, options: ExplainOptions | None = None, **knobs
) -> Explanation:
    """Explain one calibrated score of one note.

    Args:
        classifier: a loaded :class:`~healthmon.model.classifier.Classifier` (full, LoRA
            or head-only version; single- or multi-label).
        text: the note, exactly as it should be highlighted.
        target: the label to explain; default the predicted (top) label. For multi-label
            models each label is explained separately: call once per label of interest.
        options: an :class:`ExplainOptions`; keyword knobs (``tolerance=0.02``...) override it.

    Returns:
        A frozen :class:`~healthmon.types.Explanation`.
    """
    return explain_many(classifier, [text], None if target is None else [target], options=options, **knobs)[0]


def explain_many(
    classifier: "Classifier",
    texts: Sequence[str],
    targets: Sequence[str | None] | None = None,
    *,
    options: ExplainOptions | None = None,
    **knobs,
) -> list[Explanation]:
    """Explain many notes at once: notes of similar length share integration batches.

    Args:
        texts: the notes.
        targets: one label (or None for the predicted one) per note; None for all predicted.
        options / knobs: as for :func:`explain`.

    Returns:
        One explanation per note, in input order. Results are cached per
        (model version, note text, target, options).
    """
    options = replace(options or ExplainOptions(), **knobs).validated()
    texts = list(texts)
    targets = list(targets) if targets is not None else [None] * len(texts)
    if len(targets) != len(texts):
        raise ModelError(
            "one target per note", f"{len(targets)} targets for {len(texts)} notes", "pass targets of the same length"
        )
    for target in targets:
        if target is not None and target not in classifier.labels:
            raise ModelError(
                f"a label of this model ({', '.join(classifier.labels)})",
                repr(target),
                "pick one of the model's labels, or leave the target empty for the predicted one",
            )
    results: list[Explanation | None] = [None] * len(texts)
    todo: list[int] = []
    with _CACHE_LOCK:
        for i, (text, target) in enumerate(zip(texts, targets)):
            hit = _CACHE.get(_cache_key(classifier, text, target, options))
            if hit is not None:
                _CACHE.move_to_end(_cache_key(classifier, text, target, options))
                results[i] = hit
            else:
                todo.append(i)
    if todo:
        fresh = _Integrator(classifier, options).run([texts[i] for i in todo], [targets[i] for i in todo])
        with _CACHE_LOCK:
            for i, explanation in zip(todo, fresh):
                results[i] = explanation
                _CACHE[_cache_key(classifier, texts[i], targets[i], options)] = explanation
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
    return [r for r in results if r is not None]


@contextmanager
def _frozen_weights(model: torch.nn.Module) -> Iterator[None]:
    """No gradients for weights while explaining; restore exactly what was there."""
    lock = _MODEL_LOCKS.setdefault(id(model), threading.Lock())
    with lock:
        previous = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in previous:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in previous:
                p.requires_grad_(flag)


class _Integrator:
    """Runs the adaptive integration for a batch of notes with one classifier."""

    def __init__(self, classifier: "Classifier", options: ExplainOptions) -> None:
        self.clf = classifier
        self.options = options
        # int8 dynamic-quantized Linear layers have no backward: integrate the float model
        # the int8 one was made from (scores then come from the float model too).
        self.model = classifier.float_model
        self.device = classifier.device
        self.tokenizer = classifier.tokenizer
        self.embeddings = self.model.get_input_embeddings()
        if options.precision == "auto":
            self.precision = "bf16" if bf16_is_fast(self.device) else "fp32"
        elif options.precision == "bf16" and not bf16_is_fast(self.device):
            raise ModelError(
                "a device with native bf16 for precision='bf16'",
                f"{self.device.type} without fast bf16",
                "use precision='auto' or 'fp32'",
            )
        else:
            self.precision = options.precision
        self.endpoint_precision = "bf16" if classifier.precision == "bf16" else "fp32"
        self.batch_tokens = options.batch_tokens or (32768 if self.device.type == "cuda" else 4096)
        fill = self.tokenizer.pad_token_id if options.baseline == "pad" else self.tokenizer.mask_token_id
        if fill is None:
            raise ModelError(
                f"a tokenizer with a {options.baseline.upper()} token for the baseline",
                f"{type(self.tokenizer).__name__} has none",
                "use the other baseline",
            )
        self.fill_id = int(fill)
        self.special_ids = set(self.tokenizer.all_special_ids) - {self.fill_id}

    # ----------------------------------------------------------------- orchestration
    def run(self, texts: list[str], targets: list[str | None]) -> list[Explanation]:
        started = time.perf_counter()
        notes = []
        for i, text in enumerate(texts):
            win = encode_windows(self.tokenizer, [text], self.clf.card.max_length, self.clf.card.window_stride)
            if len(win.input_ids) > MAX_WINDOWS:
                raise ModelError(
                    f"a note of at most {MAX_WINDOWS} windows (about {MAX_WINDOWS * 190:,} tokens) to explain",
                    f"note {i + 1} needs {len(win.input_ids)} windows",
                    "split the note into sections and explain each",
                )
            notes.append(_Note(i, text, [list(ids) for ids in win.input_ids], [list(map(tuple, o)) for o in win.offsets]))
        # Similar lengths share a batch, so padding stays small.
        order = sorted(range(len(notes)), key=lambda i: notes[i].tokens)
        explanations: dict[int, Explanation] = {}
        with _frozen_weights(self.model):
            for group in self._groups([notes[i] for i in order]):
                group_started = time.perf_counter()
                self._endpoints(group, targets)
                self._integrate_adaptively(group)
                seconds = (time.perf_counter() - group_started) / len(group)
                for note in group:
                    explanations[note.index] = self._to_explanation(note, seconds)
        result = [explanations[i] for i in range(len(notes))]
        if self.options.faithfulness:
            from healthmon.explain.faithfulness import with_faithfulness

            result = with_faithfulness(self.clf, result, seed=self.options.seed)
        if self.options.baseline_sensitivity:
            from healthmon.explain.faithfulness import with_baseline_agreement

            result = with_baseline_agreement(self.clf, result, self.options)
        total = time.perf_counter() - started
        # Faithfulness and sensitivity run batched over all notes: share their cost out.
        extra = (total - sum(e.seconds for e in result)) / max(1, len(result))
        return [replace(e, seconds=e.seconds + max(0.0, extra)) for e in result]

    def _groups(self, notes: list[_Note]) -> Iterator[list[_Note]]:
        group: list[_Note] = []
        rows = 0
        for note in notes:
            longest = max(len(ids) for n in group + [note] for ids in n.window_ids)
            if group and (rows + len(note.window_ids)) * longest > self.batch_tokens:
                yield group
                group, rows = [], 0
            group.append(note)
            rows += len(note.window_ids)
        if group:
            yield group

    def _integrate_adaptively(self, group: list[_Note]) -> None:
        tol = self.options.tolerance
        steps = self.options.start_steps
        pending = group
        precision = self.precision
        while pending:
            self._attribute(pending, steps, precision)
            pending = [n for n in pending if abs(n.delta) > tol]
            if not pending:
                return
            if steps * 2 <= self.options.max_steps:
                steps *= 2
            elif precision == "bf16":
                # bf16 rounding can put a floor under |delta|: last try in fp32.
                precision = "fp32"
            else:
                return

    # ----------------------------------------------------------------- tensors
    def _batch(self, group: list[_Note]) -> "_Batch":
        """Every window of the group padded into one tensor, with its baseline."""
        windows = [ids for note in group for ids in note.window_ids]
        owners = [k for k, note in enumerate(group) for _ in note.window_ids]
        length = max(len(ids) for ids in windows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(windows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), length), dtype=torch.long)
        for r, row in enumerate(windows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        keep = torch.tensor([[t in self.special_ids for t in row] for row in ids.tolist()]) | (mask == 0)
        baseline = torch.where(keep, ids, torch.full_like(ids, self.fill_id))
        return _Batch(
            ids=ids.to(self.device),
            baseline=baseline.to(self.device),
            mask=mask.to(self.device),
            rows_of_note=[[r for r, o in enumerate(owners) if o == k] for k in range(len(group))],
            # Single-label aggregation weighs windows by their token count, as prediction does.
            weights=mask.sum(dim=1).float().to(self.device),
        )

    def _note_probabilities(self, logits: torch.Tensor, batch: "_Batch") -> torch.Tensor:
        """(k * rows, C) window logits -> (k, notes, C) calibrated probabilities, as prediction does."""
        z = logits.float().view(-1, batch.ids.shape[0], logits.shape[-1])
        per_note = []
        for rows in batch.rows_of_note:
            zk = z[:, rows]
            if self.clf.multi_label:
                per_note.append(zk.max(dim=1).values)
            else:
                w = batch.weights[rows]
                per_note.append((zk * w[None, :, None]).sum(dim=1) / w.sum())
        note_logits = torch.stack(per_note, dim=1) / self.clf.card.temperature
        return torch.sigmoid(note_logits) if self.clf.multi_label else torch.softmax(note_logits, dim=-1)

    def _autocast(self, precision: str):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def _endpoints(self, group: list[_Note], targets: list[str | None]) -> None:
        """One forward of every window and its baseline: f(x), f(baseline), default target."""
        batch = self._batch(group)
        with torch.inference_mode(), self._autocast(self.endpoint_precision):
            logits = self.model(
                input_ids=torch.cat([batch.ids, batch.baseline]), attention_mask=torch.cat([batch.mask, batch.mask])
            ).logits
        probs = self._note_probabilities(logits, batch).cpu().numpy()  # (2, notes, C)
        for k, note in enumerate(group):
            wanted = targets[note.index]
            note.target = self.clf.labels.index(wanted) if wanted is not None else int(np.argmax(probs[0, k]))
            note.probability = float(probs[0, k, note.target])
            note.baseline_probability = float(probs[1, k, note.target])

    def _attribute(self, group: list[_Note], steps: int, precision: str) -> None:
        batch = self._batch(group)
        rows, length = batch.ids.shape
        targets = [note.target for note in group]

        def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if not torch.is_grad_enabled():
                # Captum's endpoint passes only need the embedding layer's output (its hook
                # records it); the endpoints' scores were computed once in _endpoints.
                self.embeddings(input_ids)
                return torch.zeros(input_ids.shape[0] // rows, device=input_ids.device)
            with self._autocast(precision):
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            probs = self._note_probabilities(logits, batch)  # (k, notes, C)
            # Notes do not interact, so the gradient of the sum is each note's own gradient.
            picked = probs[:, torch.arange(len(group)), torch.tensor(targets)]
            return picked.sum(dim=1)

        per_chunk = max(rows, (self.batch_tokens // length) // rows * rows)
        lig = LayerIntegratedGradients(forward, self.embeddings)
        attributions = lig.attribute(
            batch.ids,
            baselines=batch.baseline,
            additional_forward_args=(batch.mask,),
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=per_chunk,
        )
        token_scores = attributions.float().sum(dim=-1).detach().cpu().numpy()  # (rows, length)
        for note, rows_of_note in zip(group, batch.rows_of_note):
            scores = [token_scores[r, : len(note.window_ids[j])] for j, r in enumerate(rows_of_note)]
            delta = float(sum(s.sum() for s in scores) - (note.probability - note.baseline_probability))
            note.steps_tried = note.steps_tried + (steps,)
            # Keep the best run: a later round (or the fp32 retry) replaces it only if better.
            if abs(delta) < abs(note.delta):
                note.token_scores, note.delta, note.steps, note.precision = scores, delta, steps, precision

    # ----------------------------------------------------------------- results
    def _to_explanation(self, note: _Note, seconds: float) -> Explanation:
        spans = word_spans(note.text)
        word_scores = np.zeros(len(spans), dtype=np.float64)
        tokens: list[TokenAttribution] = []
        assert note.token_scores is not None
        for w, (ids, offsets, scores) in enumerate(zip(note.window_ids, note.window_offsets, note.token_scores)):
            owners = token_word_index(note.text, spans, offsets)
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            for piece, (start, end), score, word in zip(pieces, offsets, scores, owners):
                if word >= 0:
                    word_scores[word] += float(score)
                tokens.append(TokenAttribution(piece, int(start), int(end), float(score), w, word))
        words = tuple(
            WordAttribution(note.text[s:e], s, e, float(v)) for (s, e), v in zip(spans, word_scores)
        )
        return Explanation(
            text=note.text,
            target=self.clf.labels[note.target],
            probability=note.probability,
            baseline_probability=note.baseline_probability,
            words=words,
            tokens=tuple(tokens),
            delta=note.delta,
            tolerance=self.options.tolerance,
            converged=abs(note.delta) <= self.options.tolerance,
            steps=note.steps,
            steps_tried=note.steps_tried,
            baseline=self.options.baseline,
            precision=note.precision,
            model_version=self.clf.name,
            windows=len(note.window_ids),
            seconds=seconds,
        )
