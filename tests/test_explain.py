"""Integrated-gradients explanations: exactness on a hand-checkable toy, word spans, long
notes, rendering safety, export, options and the CLI."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer
from transformers.modeling_outputs import SequenceClassifierOutput

from healthmon.cli import main
from healthmon.config import bundled_base_model_dir
from healthmon.errors import ModelError
from healthmon.explain import clear_cache, explain, explain_many, to_html, to_json, word_spans
from healthmon.model.card import MULTI_LABEL, SINGLE_LABEL, ModelCard
from healthmon.model.classifier import Classifier
from healthmon.model.device import bf16_is_fast
from healthmon.model.loading import build_model
from healthmon.types import Explanation

XSS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


class LinearToy(torch.nn.Module):
    """Captum-style toy: logit of "yes" = Σ_tokens embedding · v, logit of "no" = 0.

    Along the straight path z(α) = z_b + α·Δz, so with f = softmax(z / T)["yes"] the exact
    integrated gradient of token i is Δz_i / Δz · (f(x) − f(b)): checkable by hand.
    """

    def __init__(self, vocab: int, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embed = torch.nn.Embedding(vocab, dim)
        self.v = torch.nn.Parameter(torch.randn(dim) * 0.3)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def token_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids) @ self.v

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> SequenceClassifierOutput:
        embeds = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        yes = (embeds @ self.v * attention_mask).sum(dim=1)
        return SequenceClassifierOutput(logits=torch.stack([torch.zeros_like(yes), yes], dim=1))


class PooledToy(torch.nn.Module):
    """A small nonlinear classifier whose scores really move with the words (unlike a
    randomly initialised BERT, whose outputs barely depend on its input): mean of the
    word embeddings -> tanh layer -> logits. Keyword tokens get strong embeddings."""

    # Whole words of the bundled vocabulary (a word split into pieces would hit [UNK]).
    KEYWORDS = {"glucose": 0, "insulin": 0, "bp": 1, "pressure": 1, "tumor": 2, "chemotherapy": 2}

    def __init__(self, tokenizer, n_labels: int = 3, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.embed = torch.nn.Embedding(len(tokenizer), dim)
        with torch.no_grad():
            self.embed.weight.mul_(0.3)
            for word, label in self.KEYWORDS.items():
                assert word in tokenizer.vocab
                self.embed.weight[tokenizer.convert_tokens_to_ids(word), label] = 6.0
            # The baseline's [PAD]/[MASK] carry no evidence, so f(baseline) is near-neutral.
            self.embed.weight[tokenizer.pad_token_id] = 0.0
            self.embed.weight[tokenizer.mask_token_id] = 0.0
        self.hidden = torch.nn.Linear(dim, dim)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.eye(dim) * 2 + torch.randn(dim, dim) * 0.1)
        self.out = torch.nn.Linear(dim, n_labels)
        with torch.no_grad():
            self.out.weight.copy_(torch.eye(n_labels, dim) * 3 + torch.randn(n_labels, dim) * 0.1)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> SequenceClassifierOutput:
        embeds = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        m = attention_mask.unsqueeze(-1).to(embeds.dtype)
        pooled = (embeds * m).sum(1) / m.sum(1)
        return SequenceClassifierOutput(logits=self.out(torch.tanh(self.hidden(pooled * 3))))


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(bundled_base_model_dir()))


@pytest.fixture(scope="module")
def toy(tokenizer) -> Classifier:
    card = ModelCard(("no", "yes"), SINGLE_LABEL, "toy", "full", max_length=64, window_stride=16, temperature=1.7)
    return Classifier(LinearToy(len(tokenizer)), tokenizer, card, name="toy", device="cpu", precision="fp32")


def _tiny(tiny_base_model, tokenizer, problem_type=SINGLE_LABEL, max_length=32, stride=8) -> Classifier:
    labels = ("diabetes", "hypertension", "cancer")
    torch.manual_seed(0)
    model = build_model(str(tiny_base_model), labels, problem_type)
    card = ModelCard(labels, problem_type, str(tiny_base_model), "full", max_length=max_length, window_stride=stride,
                     temperature=1.3, thresholds={label: 0.3 for label in labels})
    return Classifier(model, tokenizer, card, name="tiny", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def tiny(tiny_base_model, tokenizer) -> Classifier:
    return _tiny(tiny_base_model, tokenizer)


def _pooled(tokenizer, problem_type=SINGLE_LABEL) -> Classifier:
    labels = ("diabetes", "hypertension", "cancer")
    card = ModelCard(labels, problem_type, "toy", "full", max_length=32, window_stride=8, temperature=1.3,
                     thresholds={label: 0.5 for label in labels})
    return Classifier(PooledToy(tokenizer), tokenizer, card, name="pooled", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def pooled(tokenizer) -> Classifier:
    return _pooled(tokenizer)


def test_toy_attributions_match_the_hand_computed_integral(toy, tokenizer):
    text = "Glucose 240 mg/dL and polyuria; HbA1c 9.1%."
    e = explain(toy, text, "yes", precision="fp32", faithfulness=False, tolerance=1e-5, max_steps=512)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    base = ids.clone()
    base[0, 1:-1] = tokenizer.pad_token_id
    model = toy.model
    with torch.no_grad():
        zx_tokens, zb_tokens = model.token_logits(ids), model.token_logits(base)
    dz = (zx_tokens - zb_tokens)[0].numpy()
    f = lambda z: 1 / (1 + np.exp(-z / 1.7))  # noqa: E731  softmax over (0, z) at temperature 1.7
    zx, zb = float(zx_tokens.sum()), float(zb_tokens.sum())
    expected_tokens = dz / dz.sum() * (f(zx) - f(zb))
    got_tokens = np.array([t.score for t in e.tokens])
    assert got_tokens == pytest.approx(expected_tokens, abs=1e-5)
    assert e.probability == pytest.approx(f(zx), abs=1e-6)
    assert e.baseline_probability == pytest.approx(f(zb), abs=1e-6)
    assert sum(w.score for w in e.words) == pytest.approx(f(zx) - f(zb), abs=1e-5)
    assert abs(e.delta) <= 1e-5 and e.converged and e.segments > 4  # refined where f moves
    # [CLS] and [SEP] equal the baseline, so they carry nothing and belong to no word.
    assert e.tokens[0].score == 0 and e.tokens[0].word_index == -1 and e.tokens[-1].score == 0


@pytest.mark.parametrize(
    "text, words",
    [
        ("BP 180/110, glucose 180 mg/dL.", ["BP", "180/110", ",", "glucose", "180", "mg/dL", "."]),
        ("T2DM (HbA1c 9.1%)", ["T2DM", "(", "HbA1c", "9.1", "%", ")"]),
        ("Café crème, naïve  patient", ["Café", "crème", ",", "naïve", "patient"]),
        ("患者有糖尿病 BP高", ["患", "者", "有", "糖", "尿", "病", "BP", "高"]),
        ("  a \t\n\n  b   ", ["a", "b"]),
        ("follow-up in patient's home", ["follow-up", "in", "patient's", "home"]),
        ("cafe\u0301s noted", ["cafe\u0301s", "noted"]),  # a decomposed accent stays in its word
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # Devanagari vowel signs are combining marks
        ("丽丸 x", ["丽", "丸", "x"]),  # CJK compatibility supplement
    ],
)
def test_words_are_exact_spans_of_the_original_text(text, words):
    spans = word_spans(text)
    assert [text[s:e] for s, e in spans] == words


def test_space_only_tokens_go_to_the_next_word_and_unknown_tokens_are_attributed(pooled):
    from healthmon.explain import token_word_index

    text = "hi there"
    # A SentencePiece-style lone "▁" token spanning the space belongs to "there".
    assert token_word_index(text, word_spans(text), [(0, 2), (2, 3), (3, 8), (0, 0)]) == [0, 1, 1, -1]
    e = explain(pooled, "glucose \U0001F600 high", precision="fp32", faithfulness=False)
    unknown = [t for t in e.tokens if t.token == pooled.tokenizer.unk_token]
    assert unknown and unknown[0].score != 0  # [UNK] stands for real text: it is not kept in the baseline
    assert e.words[unknown[0].word_index].word == "\U0001F600"


@pytest.mark.parametrize(
    "text",
    ["Glucose 180 mg/dL, T2DM since 2019.", "Café crème; naïve patient with HTN", "患者有糖尿病，血压 160/95 mmHg",
     "polyuria    and\n\n\tthirst   (3 weeks)"],
)
def test_model_tokens_merge_into_those_words(tiny, text):
    e = explain(tiny, text, faithfulness=False)
    assert [(w.start, w.end) for w in e.words] == word_spans(text)
    assert all(w.word == text[w.start : w.end] for w in e.words)
    # Every scored token lands in the word holding its characters, and every word has one.
    placed = [t for t in e.tokens if t.word_index >= 0]
    assert {t.word_index for t in placed} == set(range(len(e.words)))
    for t in placed:
        w = e.words[t.word_index]
        assert w.start <= t.start < w.end
    assert sum(w.score for w in e.words) == pytest.approx(sum(t.score for t in e.tokens), abs=1e-6)


def test_long_notes_are_explained_over_every_window_and_stitched(pooled):
    sentence = "Patient reports thirst and glucose 240 mg/dL on insulin; BP 150/95 noted. "
    text = sentence * 12
    e = explain(pooled, text, faithfulness=False, precision="fp32")
    assert e.windows == pooled.predict(text).windows > 2
    assert e.target == "diabetes" and e.probability - e.baseline_probability > 0.15  # a real change to explain
    assert [(w.start, w.end) for w in e.words] == word_spans(text)  # each word exactly once, in order
    covered = "".join(text[w.start : w.end] for w in e.words)
    assert covered == "".join(text.split())  # every visible character belongs to exactly one word
    # Overlapping windows: some words gather tokens from two windows, and every window's
    # tokens are present.
    windows_of_word: dict[int, set[int]] = {}
    for t in e.tokens:
        if t.word_index >= 0:
            windows_of_word.setdefault(t.word_index, set()).add(t.window)
    assert {t.window for t in e.tokens} == set(range(e.windows))
    assert any(len(ws) > 1 for ws in windows_of_word.values())
    assert set(windows_of_word) == set(range(len(e.words)))
    # Completeness against the very score prediction reports for the whole note.
    assert e.probability == pytest.approx(float(pooled.predict_proba(text).max()), abs=1e-5)
    assert abs(sum(w.score for w in e.words) - (e.probability - e.baseline_probability)) <= e.tolerance
    # The keywords carry the score, in every window.
    top = {w.word.lower() for w in e.top_words(24)}
    assert {"glucose", "insulin"} <= top


def test_multi_label_explains_any_label_against_its_own_sigmoid(tokenizer):
    clf = _pooled(tokenizer, MULTI_LABEL)
    text = "glucose 240 mg/dL, pressure high, tumor seen " * 3
    probs = clf.predict_proba(text)
    assert probs.shape == (3,)  # so the loop below checks all three labels
    for label, p, keyword in zip(clf.labels, probs, ("glucose", "pressure", "tumor")):
        e = explain(clf, text, label, faithfulness=False, precision="fp32")
        assert e.target == label and e.probability == pytest.approx(float(p), abs=1e-5)
        assert abs(e.delta) <= e.tolerance and abs(e.probability - e.baseline_probability) > 0.05
        assert keyword in {w.word for w in e.top_words(6)}


def test_default_target_is_the_predicted_label_and_bad_targets_explain_themselves(tiny):
    text = "metformin and HbA1c 8.9%"
    assert explain(tiny, text, faithfulness=False).target == tiny.predict(text).top_label
    with pytest.raises(ModelError, match="a label of this model"):
        explain(tiny, text, "asthma")
    with pytest.raises(ModelError, match="baseline"):
        explain(tiny, text, baseline="zeros")
    with pytest.raises(ModelError, match="one target per note"):
        explain_many(tiny, [text, text], ["cancer"])


def test_adaptive_segments_refine_until_the_cap_and_say_when_tolerance_is_missed(tiny):
    e = explain(tiny, "biopsy shows adenocarcinoma", tolerance=1e-12, segments=2, max_steps=10,
                precision="fp32", faithfulness=False)
    # 2 segments, then the worst halved (2 more steps per split) until 10 are spent.
    assert e.steps_tried[0] == 2 and e.steps_tried[-1] == e.steps <= 10 and not e.converged
    assert list(e.steps_tried) == sorted(e.steps_tried) and e.segments > 2
    assert "tolerance" in to_html(e)  # the reader is told the shading is approximate


@pytest.mark.skipif(not bf16_is_fast(torch.device("cpu")), reason="this CPU has no native bf16")
def test_a_note_that_bf16_cannot_settle_is_integrated_again_in_fp32(tiny):
    e = explain(tiny, "biopsy shows adenocarcinoma", tolerance=1e-7, max_steps=8, precision="bf16",
                faithfulness=False)
    assert e.precision == "fp32" and e.steps_tried[-1] > 8  # a bf16 pass, then an fp32 pass
    ok = explain(tiny, "biopsy shows adenocarcinoma", precision="bf16", faithfulness=False)
    assert ok.precision == "bf16" and ok.converged


def test_segments_are_captum_layer_integrated_gradients_on_the_word_embeddings(pooled):
    """Four uniform segments of one midpoint node each are exactly Captum's
    LayerIntegratedGradients with the riemann_middle rule and 4 steps."""
    from captum.attr import LayerIntegratedGradients

    text = "thirst and glucose 240 mg/dL; insulin, pressure"
    e = explain(pooled, text, "diabetes", segments=4, max_steps=4, tolerance=1e-9, precision="fp32",
                faithfulness=False)
    assert e.steps == 4 and e.segments == 4  # no budget left to refine
    enc = pooled.tokenizer(text, return_tensors="pt")
    base = enc["input_ids"].clone()
    base[0, 1:-1] = pooled.tokenizer.pad_token_id
    model = pooled.model

    def forward(ids, mask):
        return torch.softmax(model(input_ids=ids, attention_mask=mask).logits / pooled.card.temperature, -1)

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    reference = lig.attribute(enc["input_ids"], baselines=base, target=0, additional_forward_args=(enc["attention_mask"],),
                              n_steps=4, method="riemann_middle").sum(-1)[0]
    assert reference.abs().max() > 0.05  # a real attribution, not numerical dust
    assert [t.score for t in e.tokens] == pytest.approx(reference.tolist(), abs=1e-6)
    # Adaptive refinement converges on what many uniform Gauss-Legendre steps give.
    fine = explain(pooled, text, "diabetes", tolerance=1e-4, max_steps=512, precision="fp32", faithfulness=False)
    many = lig.attribute(enc["input_ids"], baselines=base, target=0, additional_forward_args=(enc["attention_mask"],),
                         n_steps=256, method="gausslegendre").sum(-1)[0]
    assert fine.converged
    assert [t.score for t in fine.tokens] == pytest.approx(many.tolist(), abs=2e-3 * float(many.abs().max()))


def test_results_are_cached_per_version_text_target_and_options(tiny):
    first = explain(tiny, "amlodipine for HTN", faithfulness=False)
    assert explain(tiny, "amlodipine for HTN", faithfulness=False) is first
    assert explain(tiny, "amlodipine for HTN", faithfulness=False, baseline="mask") is not first
    assert explain(tiny, "amlodipine for HTN ", faithfulness=False) is not first
    # Another classifier with the same name and model but a different temperature is
    # another score: never served from the first one's cache.
    warmer_card = tiny.card.__class__(**{**tiny.card.__dict__, "temperature": 9.0})
    warmer = Classifier(tiny.model, tiny.tokenizer, warmer_card, name=tiny.name, device="cpu", precision="fp32")
    other = explain(warmer, "amlodipine for HTN", faithfulness=False)
    assert other is not first and other.probability != first.probability


def test_batch_api_matches_one_at_a_time(pooled):
    texts = ["polyuria and thirst", "BP 162/98 mmHg with headache " * 4, "biopsy", "glucose " * 40]
    together = explain_many(pooled, texts, faithfulness=False, precision="fp32")
    clear_cache()
    alone = [explain(pooled, t, faithfulness=False, precision="fp32") for t in texts]
    assert len(together) == len(texts)  # zip below would pass on an empty batch
    for a, b in zip(together, alone):
        assert a.text == b.text and a.target == b.target and a.steps == b.steps
        scale = max(abs(w.score) for w in b.words)
        assert scale > 0.01
        assert [w.score for w in a.words] == pytest.approx([w.score for w in b.words], abs=1e-4 * scale)


def test_weights_never_require_grad_during_and_are_restored_after(tiny):
    seen: list[bool] = []
    hook = tiny.model.classifier.register_forward_hook(
        lambda m, i, o: seen.append(any(p.requires_grad for p in tiny.model.parameters()))
    )
    try:
        explain(tiny, "lisinopril", faithfulness=False)
    finally:
        hook.remove()
    assert seen and not any(seen)
    assert all(p.requires_grad for p in tiny.model.parameters())


def test_int8_versions_are_explained_through_their_float_model(pooled):
    # int8 is CPU-only (dynamic quantisation): asked for on the CPU, not left to "auto", which
    # picks the GPU where there is one and refuses int8 there.
    int8 = Classifier(pooled.model, pooled.tokenizer, pooled.card, name="pooled-int8", precision="int8", device="cpu")
    e = explain(int8, "glucose 240 mg/dL", faithfulness=False)
    # The float model's score (what was integrated), close to the int8 one served.
    assert e.probability == pytest.approx(float(pooled.predict_proba("glucose 240 mg/dL").max()), abs=1e-5)
    assert e.probability == pytest.approx(float(int8.predict_proba("glucose 240 mg/dL").max()), abs=0.05)
    assert abs(e.delta) <= e.tolerance and e.top_words(1)[0].word == "glucose"


def test_faithfulness_and_baseline_sensitivity_are_reported(pooled):
    text = "Seen today: thirst for weeks, glucose 240 mg/dL on insulin, otherwise well, no pain or fever"
    e = explain(pooled, text, baseline_sensitivity=True)
    f = e.faithfulness
    assert f is not None and f.fractions == (0.01, 0.05, 0.10, 0.20, 0.50)
    # The keywords carry this toy's score: deleting the top words must hurt far more than
    # deleting random ones, and keeping only them must keep most of the score.
    assert f.comprehensiveness > f.random_comprehensiveness + 0.2
    assert f.sufficiency < f.comprehensiveness and f.trust == "high"
    assert e.baseline_agreement is not None and 0.5 < e.baseline_agreement <= 1


def test_html_shades_words_and_keeps_hostile_text_inert(tiny):
    text = f"BP 180/110 {XSS[0]} then {XSS[1]} & \"quotes\" 'too'"
    e = explain(tiny, text, faithfulness=False)
    page = to_html(e)

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.data: list[str] = []
            self.titles: list[str] = []
            self.attributes: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.attributes += [k for k, _ in attrs]
            self.titles += [v for k, v in attrs if k == "title"]

        def handle_data(self, data):
            self.data.append(data)

    parsed = Tags()
    parsed.feed(page)
    assert set(parsed.tags) <= {"style", "div", "span", "b"}  # no script, no img
    assert set(parsed.attributes) <= {"class", "style", "title", "data-score"}  # no onerror, no src
    visible = "".join(parsed.data)
    assert XSS[0] in visible and XSS[1] in visible  # shown to the reader as plain text
    assert len([t for t in parsed.titles if ": " in t]) == len(e.words)  # one tooltip per word
    assert "toward" in page and "against" in page  # legend


def test_html_escapes_label_names_too(tiny_base_model, tokenizer):
    clf = _tiny(tiny_base_model, tokenizer)
    hostile = ModelCard(("<b>x</b>", "y", "z"), SINGLE_LABEL, "t", "full", max_length=32, window_stride=8)
    clf = Classifier(clf.model, clf.tokenizer, hostile, name="<i>v</i>", device="cpu", precision="fp32")
    page = to_html(explain(clf, "text", "<b>x</b>", faithfulness=False))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<i>v</i>" not in page


def test_json_export_round_trips_every_field(tiny):
    e = explain(tiny, "chemotherapy after biopsy", baseline_sensitivity=True)
    data = json.loads(to_json(e))
    assert data["text"] == e.text and data["delta"] == e.delta and data["steps"] == e.steps
    assert [w["word"] for w in data["words"]] == [w.word for w in e.words]
    assert len(data["tokens"]) == len(e.tokens) and data["faithfulness"]["trust"] == e.faithfulness.trust
    assert set(data) >= set(Explanation.__dataclass_fields__) | {"relative_delta"}


def test_cli_explain_writes_html_and_jsonl(tmp_path, tiny, capsys):
    version = tmp_path / "v"
    version.mkdir()
    tiny.model.save_pretrained(str(version / "model"))
    tiny.tokenizer.save_pretrained(str(version))
    tiny.card.__class__(**{**tiny.card.__dict__, "weights_format": "full"}).save(version)
    html_out = tmp_path / "one.html"
    assert main(["explain", "--model", str(version), "--text", XSS[0] + " glucose", "--out", str(html_out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["explanations"] == 1 and "<script>" not in html_out.read_text()
    notes = tmp_path / "notes.csv"
    notes.write_text("note_id,text\na,polyuria and thirst\nb,BP 162/98 mmHg\n", encoding="utf-8")
    jsonl = tmp_path / "out.jsonl"
    assert main(["explain", "--model", str(version), "--data", str(notes), "--out", str(jsonl), "--target", "cancer",
                 "--no-faithfulness"]) == 0
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["note_id"] for r in rows] == ["a", "b"] and {r["explanation"]["target"] for r in rows} == {"cancer"}
    assert main(["explain", "--model", str(version), "--text", "x", "--out", str(tmp_path / "x.pdf")]) == 2
    assert "--out ending in .html or .jsonl" in capsys.readouterr().err
    assert main(["explain", "--model", str(version), "--text", "x", "--target", "flu", "--out", str(jsonl)]) == 2
