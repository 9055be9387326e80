"""CDS Hooks ``patient-view`` on a real Synthea patient: discovery, cards, and the numbers behind them.

The Synthea bundles in ``SHARED_DATA/fhir-synthea-bundles`` (SOURCE.md: SMART Health IT's
generated sample data, 2019 Synthea) carry Patient, Encounter, Condition and Observation but no
DocumentReference, so the notes are built here from each encounter's own text (its type, reason,
and the conditions and observations recorded at it), as base64 ``text/plain`` DocumentReferences.
The bundles are read in place, never copied.
"""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import pytest
from api_support import make_api, trained_version
from conftest import SHARED_DATA, make_notes
from sqlalchemy import select

from healthmon.api.cds_cards import (
    Card,
    NoteScore,
    carded_labels,
    read_prefetch,
    risk_cards,
    top_words,
)
from healthmon.config import Settings
from healthmon.errors import IngestError
from healthmon.escaping import escape_markdown
from healthmon.ingest.fhir import read_fhir
from healthmon.services import links
from healthmon.storage.db import transaction
from healthmon.storage.models import AuditEntry
from healthmon.types import Note, Prediction
from healthmon.vitals.assess import assess_patient, readings_setting

BUNDLES = SHARED_DATA / "fhir-synthea-bundles"
PATIENT_FILE = "Fabian_Murray_a120c913-9ee0-4fcc-8344-826e74335c80.json"  # diabetes; BP panels, HbA1c
HOSTILE = "Patient says <script>alert(1)</script> and [click](http://evil.example) ![x](http://evil.example/i.png)"


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_base_model):
    """One served tiny model and database for the module (training it is the slow part)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("cds") / "data", base_model=str(tiny_base_model),
                        max_length=64, seed=7)
    return make_api(settings, trained_version(settings, make_notes()))


def _bundle() -> dict:
    path = BUNDLES / PATIENT_FILE
    if not path.is_file():
        pytest.skip(f"the Synthea bundles are not at {BUNDLES} (set HEALTHMON_SHARED_DATA_DIR to the shared data "
                    "folder holding fhir-synthea-bundles/)")
    return json.loads(path.read_text(encoding="utf-8"))


def _as_server_would(resource: dict, patient_id: str) -> dict:
    """Synthea's transaction references (urn:uuid:...) as a FHIR server returns them (Patient/<id>)."""
    resource = dict(resource)
    if "subject" in resource:
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
    return resource


def _searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def _note(doc_id: str, patient_id: str, text: str, when: str) -> dict:
    return {"resourceType": "DocumentReference", "id": doc_id, "status": "current",
            "subject": {"reference": f"Patient/{patient_id}"}, "date": when,
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


def _encounter_notes(bundle: dict, patient_id: str, n: int = 4) -> list[dict]:
    """One DocumentReference per recent encounter, its text from what the bundle recorded at it."""
    resources = [e["resource"] for e in bundle["entry"]]
    at: dict[str, list[str]] = {}
    for r in resources:
        ref = (r.get("encounter") or {}).get("reference", "").removeprefix("urn:uuid:")
        if r["resourceType"] == "Condition":
            at.setdefault(ref, []).append(f"diagnosed {r['code']['text']}")
        elif r["resourceType"] == "Observation" and "valueQuantity" in r:
            q = r["valueQuantity"]
            at.setdefault(ref, []).append(f"{r['code']['text']} {q['value']:.1f} {q.get('unit', '')}".strip())
    encounters = sorted((r for r in resources if r["resourceType"] == "Encounter"),
                        key=lambda r: r["period"]["start"], reverse=True)[:n]
    notes = []
    for enc in encounters:
        reason = "; ".join(c["coding"][0]["display"] for c in enc.get("reasonCode", []))
        text = (f"{enc['type'][0]['text']} on {enc['period']['start'][:10]}."
                + (f" Reason: {reason}." if reason else "")
                + (" " + ". ".join(at.get(enc["id"], [])) + "." if at.get(enc["id"]) else ""))
        notes.append(_note(f"enc-{enc['id'][:8]}", patient_id, text, enc["period"]["start"]))
    return notes


def _hook(patient: dict | None, notes: list[dict] | None, vitals: list[dict] | None, patient_id: str) -> dict:
    prefetch = {}
    if patient is not None:
        prefetch["patient"] = patient
    if notes is not None:
        prefetch["notes"] = _searchset(notes)
    if vitals is not None:
        prefetch["vitals"] = _searchset(vitals)
    return {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "fhirServer": "https://ehr.example/fhir", "context": {"userId": "Practitioner/7", "patientId": patient_id},
            "prefetch": prefetch}


@pytest.fixture(scope="module")
def synthea() -> dict:
    bundle = _bundle()
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    pid = patient["id"]
    vitals = [_as_server_would(e["resource"], pid) for e in bundle["entry"]
              if e["resource"]["resourceType"] == "Observation"
              and any(c["coding"][0]["code"] == "vital-signs" for c in e["resource"].get("category", []))]
    notes = _encounter_notes(bundle, pid)
    url_only = {"resourceType": "DocumentReference", "id": "scan-1", "status": "current",
                "subject": {"reference": f"Patient/{pid}"},
                "content": [{"attachment": {"contentType": "text/plain", "url": "https://ehr.example/Binary/1"}}]}
    return {"patient": patient, "id": pid, "vitals": vitals, "notes": notes, "url_only": url_only}


def _by_kind(cards: list[dict], kind: str) -> list[dict]:
    return [c for c in cards if c.get("extension", {}).get("healthmon", {}).get("kind") == kind]


# ---------------------------------------------------------------------------------- the service


def test_discovery_lists_the_service_and_needs_a_token(api):
    for path in ("/cds-services", "/cds-services/"):
        answer = api.client.get(path, headers=api.auth("ann"), follow_redirects=False)  # any account may discover
        assert answer.status_code == 200, answer.text
        [service] = answer.json()["services"]
        assert (service["hook"], service["id"]) == ("patient-view", "healthmon-risk")
        assert set(service["prefetch"]) == {"patient", "notes", "vitals"}
        assert service["prefetch"]["vitals"].startswith("Observation?patient={{context.patientId}}&category=vital-signs")
    refused = api.client.get("/cds-services/")
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"


def test_patient_view_on_a_synthea_patient_gives_the_numbers_of_the_rest_api(api, synthea):
    pid = synthea["id"]
    request = _hook(synthea["patient"], synthea["notes"] + [synthea["url_only"]], synthea["vitals"], pid)
    answer = api.client.post("/cds-services/healthmon-risk", json=request, headers=api.auth("cli"))
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert cards
    for card in cards:
        assert len(card["summary"]) <= 140 and card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"] == "healthmon" and re.fullmatch(r"[0-9a-f-]{36}", card["uuid"])
        assert Card.from_dict(card).to_dict() == card  # what we send reads back

    # Risk: the same probability as POST /api/v1/models/active:predict on the same note text.
    texts = {d["id"]: base64.b64decode(d["content"][0]["attachment"]["data"]).decode() for d in synthea["notes"]}
    [risk] = _by_kind(cards, "risk")  # a single-label version: the top label's card
    facts = risk["extension"]["healthmon"]
    rest = api.client.post("/api/v1/models/active:predict", headers=api.auth("cli"),
                           json={"instances": [{"text": t, "note_id": i} for i, t in texts.items()]}).json()
    by_note = {p["note_id"]: p for p in rest["predictions"]}
    assert facts["probability"] == pytest.approx(by_note[facts["note_id"]]["probabilities"][facts["label"]], abs=1e-6)
    top = max(max(p["probabilities"].values()) for p in rest["predictions"])
    assert facts["probability"] == pytest.approx(top, abs=1e-6) and facts["model_version"] == rest["model_version"]
    assert risk["summary"] == f"{facts['label']} risk {facts['probability']:.2f} (calibrated)"
    # The words: the top 5 positive ones of /models/active:explain on that note and label.
    explained = api.client.post("/api/v1/models/active:explain", headers=api.auth("cli"), json={
        "instances": [{"text": texts[facts["note_id"]], "target": facts["label"]}], "faithfulness": False}).json()
    words = [SimpleNamespace(**w) for w in explained["explanations"][0]["words"]]
    assert facts["words"] == [escape_markdown(w) for w in top_words(words)] and len(facts["words"]) <= 5
    assert ("Words behind it" if facts["words"] else "No word pushed") in risk["detail"]
    assert "Not read (1)" in risk["detail"] and "Binary/1" in risk["detail"].replace("\\", "")  # the URL-only note

    # The link opens the stored case of that very note.
    [link] = risk["links"]
    assert link["type"] == "absolute" and "/Case?case=" in link["url"]
    ref = link["url"].rsplit("=", 1)[1]  # an opaque id, resolved by the dashboard: no case number in the URL
    assert ref != str(facts["case"]) and links.resolve_ref(api.factory, "case", ref) == str(facts["case"])
    case = api.client.get(f"/api/v1/cases/{facts['case']}", headers=api.auth("cli"))
    assert case.status_code == 200 and case.json()["text"] == texts[facts["note_id"]]
    assert case.json()["patient_id"] == pid

    # Vitals: NEWS2 and BP as assess_patient gives them on the same Observations.
    frame = read_fhir(json.dumps(_searchset(synthea["vitals"])), "vitals").frame
    expected = assess_patient(frame, pid, setting=readings_setting(frame, pid))
    [vitals] = _by_kind(cards, "vitals")
    v = vitals["extension"]["healthmon"]
    assert v["news2_total"] == int(expected.latest_news2["total"])
    assert vitals["summary"].startswith(f"NEWS2 {v['news2_total']} ")
    assert v["bp_category"] == expected.bp.category and v["bp_systolic"] == pytest.approx(expected.bp.systolic)

    # Advice: each fired rule is a card citing its source.
    for card in _by_kind(cards, "advice"):
        assert "Source: " in card["detail"] and card["extension"]["healthmon"]["rule"]

    # The audit entry names the patient.
    api.state.audit.flush()
    with transaction(api.factory) as s:
        calls = [e.after for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "api.call"))]
    assert any(c.get("patients") == [pid] and c.get("status") == 200 for c in calls)


def test_roles_and_tokens(api, synthea):
    request = _hook(synthea["patient"], synthea["notes"], None, synthea["id"])
    no_token = api.client.post("/cds-services/healthmon-risk", json=request)
    assert no_token.status_code == 401 and no_token.json()["title"] == "Unauthorized"
    annotator = api.client.post("/cds-services/healthmon-risk", json=request, headers=api.auth("ann"))
    assert annotator.status_code == 403 and annotator.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("change, status", [
    (lambda r: r.pop("context"), 422),
    (lambda r: r.update(hook="order-select"), 422),
    (lambda r: r.update(surprise=1), 422),
    (lambda r: r["context"].update(patientId="../etc"), 422),
    (lambda r: r["prefetch"].update(labs={"resourceType": "Bundle"}), 422),
    (lambda r: r["prefetch"].update(notes={"entry": []}), 400),  # no resourceType
    (lambda r: r["prefetch"].update(patient={"resourceType": "Patient", "id": "someone-else"}), 400),
    (lambda r: r["prefetch"].update(patient={"resourceType": "Patient", "id": "p1", "gender": 3}), 400),
])
def test_malformed_hook_requests_are_problems(api, change, status):
    request = _hook({"resourceType": "Patient", "id": "p1"}, [], [], "p1")
    change(request)
    answer = api.client.post("/cds-services/healthmon-risk", json=request, headers=api.auth("cli"))
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json" and body["status"] == status
    assert body.get("fix") or body.get("errors")


def test_not_json_is_a_problem(api):
    answer = api.client.post("/cds-services/healthmon-risk", content=b"{not json",
                             headers={**api.auth("cli"), "Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _assert_escaped(cards: list[dict]) -> None:
    """No markup of the note survives: every <, [ and ( from it is backslash-escaped."""
    for text in _strings(cards):
        assert not re.search(r"(?<!\\)<", text), text
        for raw in ("[click](", "![x](", "alert(1)"):
            assert raw not in text, text


def test_a_hostile_note_never_reaches_a_card_unescaped(api):
    request = _hook({"resourceType": "Patient", "id": "p-hostile"},
                    [_note("evil-1", "p-hostile", HOSTILE, "2024-01-01T10:00:00Z")], None, "p-hostile")
    answer = api.client.post("/cds-services/healthmon-risk", json=request, headers=api.auth("cli"))
    assert answer.status_code == 200, answer.text
    _assert_escaped(answer.json()["cards"])
    # The words themselves, whatever the tiny model picked, are escaped where markdown is written.
    cards = risk_cards(
        [NoteScore(Note(HOSTILE, "evil-1", "p"), Prediction({"a": 0.9, "b": 0.1}, ("a",), "v1",
                                                            "single_label_classification"), 3, "Rf3x")],
        {}, ["<script>alert(1)</script>", "[click](http://evil.example)"], "https://hm.example")
    _assert_escaped([c.to_dict() for c in cards])
    assert "<script>" not in cards[0].detail and "\\<script\\>" in cards[0].detail
    assert "[click](" not in cards[0].detail and cards[0].links == (("Open the case in healthmon",
                                                                    "https://hm.example/Case?case=Rf3x"),)


def test_an_empty_prefetch_gives_one_card_saying_nothing_was_scored_or_fetched(api):
    request = _hook(None, None, None, "p-empty")
    answer = api.client.post("/cds-services/healthmon-risk", json=request, headers=api.auth("cli"))
    assert answer.status_code == 200, answer.text
    [card] = answer.json()["cards"]
    assert card["indicator"] == "info" and "nothing could be scored" in card["summary"]
    assert "never queries the FHIR server" in card["detail"]
    # Only a URL-only note: still nothing scored, and the unread document is counted.
    url_only = {"resourceType": "DocumentReference", "id": "d1", "status": "current",
                "subject": {"reference": "Patient/p-empty"},
                "content": [{"attachment": {"contentType": "text/plain", "url": "https://ehr.example/Binary/9"}}]}
    answer = api.client.post("/cds-services/healthmon-risk", json=_hook(None, [url_only], [], "p-empty"),
                             headers=api.auth("cli"))
    [card] = answer.json()["cards"]
    assert "Not read (1)" in card["detail"]


def test_public_url_makes_the_case_link(tmp_path, tiny_base_model):
    settings = Settings(data_dir=tmp_path / "data", base_model=str(tiny_base_model), max_length=64, seed=7)
    api = make_api(settings, trained_version(settings, make_notes(4)), public_url="https://healthmon.example.org/")
    request = _hook(None, [_note("n1", "p2", "patient reports polyuria and metformin", "2024-02-01T09:00:00+01:00")], None, "p2")
    cards = api.client.post("/cds-services/healthmon-risk", json=request, headers=api.auth("cli")).json()["cards"]
    [risk] = _by_kind(cards, "risk")
    url = risk["links"][0]["url"]
    assert url.startswith("https://healthmon.example.org/Case?case=")
    assert links.resolve_ref(api.factory, "case", url.rsplit("=", 1)[1]) == str(risk["extension"]["healthmon"]["case"])


# ------------------------------------------------------------------------------- the pure parts


def _score(probabilities: dict[str, float], note_id: str, case: int | None = None) -> NoteScore:
    labels = tuple(k for k, v in probabilities.items() if v >= 0.5)
    return NoteScore(Note("text", note_id, "p"), Prediction(probabilities, labels, "v1", "multi_label_classification"),
                     case)


def test_multi_label_cards_one_per_label_at_its_threshold_highest_first():
    scores = [_score({"diabetes": 0.55, "hypertension": 0.2, "cancer": 0.1}, "a", 1),
              _score({"diabetes": 0.3, "hypertension": 0.85, "cancer": 0.39}, "b", 2)]
    thresholds = {"diabetes": 0.5, "hypertension": 0.5, "cancer": 0.4}
    assert [(label, s.note.note_id) for label, s in carded_labels(scores, thresholds)] == [
        ("hypertension", "b"), ("diabetes", "a")]
    cards = risk_cards(scores, thresholds, ["bp"], "https://hm")
    assert [(c.summary, c.indicator) for c in cards] == [("hypertension risk 0.85 (calibrated)", "critical"),
                                                        ("diabetes risk 0.55 (calibrated)", "warning")]
    assert "Words behind it" in cards[0].detail and "Words behind it" not in cards[1].detail
    [none] = risk_cards(scores, {"diabetes": 0.9, "hypertension": 0.9, "cancer": 0.9}, [], "https://hm")
    assert none.indicator == "info" and "No risk at or above" in none.summary


def test_a_no_finding_label_never_gets_a_risk_card():
    # The demo model is multi-label with a "none" label: a confident "none" is reassurance.
    scores = [_score({"none": 0.93, "diabetes": 0.2, "hypertension": 0.1}, "a", 1)]
    thresholds = {"none": 0.5, "diabetes": 0.5, "hypertension": 0.5}
    assert carded_labels(scores, thresholds) == []
    [card] = risk_cards(scores, thresholds, [], "https://hm")
    assert card.indicator == "info" and "(highest 0.20)" in card.summary
    single = [NoteScore(Note("t", "a", "p"), Prediction({"none": 0.7, "diabetes": 0.3}, ("none",), "v1",
                                                        "single_label_classification"), 1),
              NoteScore(Note("t", "b", "p"), Prediction({"none": 0.4, "diabetes": 0.6}, ("diabetes",), "v1",
                                                        "single_label_classification"), 2)]
    assert [(label, s.note.note_id) for label, s in carded_labels(single, {})] == [("diabetes", "b")]


def test_prefetch_leaves_out_other_patients_and_wrong_types_and_says_so():
    notes = _searchset([_note("n1", "p1", "one note", "2024-01-01T00:00:00Z"), _note("n2", "p9", "not theirs", "2024-01-02T00:00:00Z"),
                        {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}])
    data = read_prefetch({"notes": notes}, "p1", max_notes=10)
    assert [n.note_id for n in data.notes] == ["n1"] and data.notes[0].source == "cds-hooks"
    assert any("another patient" in why for why in data.not_read)
    assert any("Observation" in why for why in data.not_read)
    with pytest.raises(IngestError, match="prefetch.vitals"):
        read_prefetch({"vitals": {"entry": []}}, "p1", max_notes=10)


def test_card_from_dict_refuses_unknown_keys():
    card = Card("s", "info", "d", "https://hm").to_dict()
    with pytest.raises(IngestError, match="suggestions"):
        Card.from_dict({**card, "suggestions": []})
    with pytest.raises(IngestError):
        Card("s", "urgent", "d", "https://hm")
    assert len(Card("x" * 300, "info", "", "").summary) == 140
