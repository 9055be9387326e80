"""Classifier behaviour (long notes, precision choice, input forms) and atomic version folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from healthmon.errors import ConfigError, ModelError
from healthmon.model.card import ModelCard
from healthmon.model.classifier import Classifier, encode_windows
from healthmon.model.device import pick_device, resolve_precision
from healthmon.model.versions import atomic_version_dir
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train


@pytest.fixture()
def version(settings, notes):
    args = TrainArgs(mode="head", max_steps=2)
    return train(notes, args, out_dir=settings.data_dir / "v", settings=settings, progress=False).version_dir


def test_predict_accepts_one_string_or_a_list(version, settings):
    clf = Classifier.from_pretrained(version, settings=settings, precision="fp32")
    one = clf.predict_proba("glucose 240 mg/dL")
    many = clf.predict_proba(["glucose 240 mg/dL", "BP 162/98 mmHg"])
    assert one.shape == (3,) and many.shape == (2, 3)
    assert one == pytest.approx(many[0], abs=1e-6)  # batch-mates do not change a note's score in fp32
    assert many.sum(axis=1) == pytest.approx([1.0, 1.0])
    pred = clf.predict("glucose 240 mg/dL")
    assert pred.labels == (pred.top_label,) and pred.model_version == "v" and pred.windows == 1
    assert clf.predict([]) == []


def test_long_notes_are_scored_over_every_window(version, settings):
    clf = Classifier.from_pretrained(version, settings=settings, precision="fp32")
    long_note = " ".join(f"word{i} glucose" for i in range(200))  # far over max_length=64
    windows = encode_windows(clf.tokenizer, [long_note, "short"], clf.card.max_length, clf.card.window_stride)
    per_note = np.bincount(windows.note_index)
    assert per_note[0] > 3 and per_note[1] == 1
    assert max(len(ids) for ids in windows.input_ids) <= clf.card.max_length
    # Every character of the note is inside at least one window.
    covered = np.zeros(len(long_note), bool)
    for ids_offsets, owner in zip(windows.offsets, windows.note_index):
        if owner == 0:
            for start, end in ids_offsets:
                covered[start:end] = True
    assert covered[[i for i, ch in enumerate(long_note) if not ch.isspace()]].all()
    pred = clf.predict(long_note)
    assert pred.windows == per_note[0]
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)


def test_a_note_its_windows_do_not_cover_is_refused_not_scored_in_part(version, settings):
    from healthmon.model.classifier import _check_windows_cover_notes

    clf = Classifier.from_pretrained(version, settings=settings, precision="fp32")
    long_note = " ".join(f"word{i} glucose" for i in range(200))
    windows = encode_windows(clf.tokenizer, [long_note, "short"], clf.card.max_length, clf.card.window_stride)
    stride = min(clf.card.window_stride, clf.card.max_length // 2)
    everything = list(range(len(windows.input_ids)))
    _check_windows_cover_notes(clf.tokenizer, [long_note, "short"], windows.input_ids, windows.note_index, stride)
    # What transformers 5.17 returned (the first window and one overflow window), and the
    # smallest loss: only the long note's last window missing.
    for kept in ([0, 1, everything[-1]], everything[:-2] + everything[-1:]):
        with pytest.raises(ModelError, match=r"1 note\(s\) of 2 cut short \(one has \d+ of its 729 tokens"):
            _check_windows_cover_notes(clf.tokenizer, [long_note, "short"], [windows.input_ids[k] for k in kept],
                                       windows.note_index[kept], stride)


def test_a_tokenizer_that_returns_one_overflow_window_is_refused_when_the_version_loads(version, settings):
    clf = Classifier.from_pretrained(version, settings=settings, precision="fp32")

    class OneOverflowWindow:  # what transformers 5.17's tokenizer returned: a note's first two windows only
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, texts, **kwargs):
            encoded = self.inner(texts, **kwargs)
            if not kwargs.get("return_overflowing_tokens"):
                return encoded
            notes = list(encoded["overflow_to_sample_mapping"])
            kept = [k for k, note in enumerate(notes) if notes[:k].count(note) < 2]
            return {key: [encoded[key][k] for k in kept] for key in encoded.keys()}

    with pytest.raises(ModelError, match=r"windows covering every token of each note.*cut short"):
        Classifier(clf.float_model, OneOverflowWindow(clf.tokenizer), clf.card, device="cpu")

    class SlowTokenizer(OneOverflowWindow):  # a Python tokenizer: no offsets, as transformers raises for one
        def __call__(self, texts, **kwargs):
            if kwargs.get("return_offsets_mapping"):
                raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
            return self.inner(texts, **kwargs)

    with pytest.raises(ModelError, match=r"a fast tokenizer .*SlowTokenizer: NotImplementedError"):
        Classifier(clf.float_model, SlowTokenizer(clf.tokenizer), clf.card, device="cpu")


def test_int8_option_keeps_scores_close_and_the_fp32_model_untouched(version, settings):
    fp32 = Classifier.from_pretrained(version, settings=settings, precision="fp32")
    int8 = Classifier(fp32.model, fp32.tokenizer, fp32.card, precision="int8", device="cpu")  # int8 is CPU-only
    texts = ["glucose 240 mg/dL", "biopsy adenocarcinoma", "amlodipine"]
    drift = np.abs(fp32.predict_proba(texts) - int8.predict_proba(texts)).max()
    assert drift < 0.05
    assert isinstance(fp32.model.classifier, torch.nn.Linear)  # quantisation worked on a copy


def test_auto_precision_uses_bf16_only_when_the_version_passed_its_bf16_check(monkeypatch):
    import healthmon.model.device as device_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "bf16_is_fast", lambda device: True)
    assert resolve_precision("auto", cpu, {"max_drift": 0.004, "agreement": 1.0}) == "bf16"
    assert resolve_precision("auto", cpu, {"max_drift": 0.03, "agreement": 1.0}) == "fp32"
    assert resolve_precision("auto", cpu, {"max_drift": 0.004, "agreement": 0.99}) == "fp32"
    assert resolve_precision("auto", cpu, None) == "fp32"  # versions without a check stay exact
    monkeypatch.setattr(device_module, "bf16_is_fast", lambda device: False)
    assert resolve_precision("auto", cpu, {"max_drift": 0.0, "agreement": 1.0}) == "fp32"


def test_explicit_bad_precision_choices_explain_themselves(monkeypatch):
    with pytest.raises(ConfigError, match="int8 precision on a CPU device"):
        resolve_precision("int8", torch.device("cuda"))
    # "auto" prefers cuda, then mps, then cpu; an explicit device that is not there is refused.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="HEALTHMON_DEVICE"):
        pick_device("cuda")
    with pytest.raises(ConfigError, match="HEALTHMON_DEVICE"):
        pick_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_missing_or_broken_version_folder_is_a_model_error(tmp_path, version):
    with pytest.raises(ModelError, match="card.json"):
        Classifier.from_pretrained(tmp_path)
    (version / "head.safetensors").unlink()
    with pytest.raises(ModelError, match="weights"):
        Classifier.from_pretrained(version)


def test_a_failure_inside_the_version_block_leaves_nothing_behind(tmp_path):
    target = tmp_path / "models" / "v1"
    with pytest.raises(RuntimeError):
        with atomic_version_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_a_version_without_a_card_is_never_published(tmp_path):
    target = tmp_path / "v"
    with pytest.raises(ModelError, match="card.json"):
        with atomic_version_dir(target) as tmp:
            (tmp / "weights").write_bytes(b"x")
    assert not target.exists()


def test_card_round_trip(tmp_path):
    card = ModelCard(labels=("a", "b"), problem_type="single_label_classification", base_model="x",
                     weights_format="lora", max_length=128, window_stride=32, temperature=1.7)
    card.save(tmp_path)
    assert ModelCard.load(tmp_path) == card
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="valid card.json"):
        ModelCard.load(tmp_path)


def test_length_batches_cap_windows_and_padding():
    import numpy as np

    from healthmon.model.classifier import length_batches

    # 400 * 5 = 2,000 padded tokens for 1,670 real: within 20 %; adding 190 would pass it.
    assert length_batches(np.array([400, 390, 380, 300, 200, 190, 100, 50, 49, 48]), 8) == [
        (0, 5), (5, 6), (6, 7), (7, 10)]
    assert length_batches(np.array([100] * 20), 8) == [(0, 8), (8, 16), (16, 20)]
    assert length_batches(np.array([], dtype=int), 8) == []
