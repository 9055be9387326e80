"""``/vitals:score`` and ``/patients/{id}/report`` on a real database (and, for the report, the tiny model)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from api_support import make_api, trained_version

from healthmon.ingest.devices import read_device_files
from healthmon.services.vitals import store_vitals, stored_patient_count

SCORE = "/api/v1/vitals:score"
COLUMNS = ["patient_id", "time", "heart_rate", "systolic_bp", "diastolic_bp", "respiration_rate", "spo2",
           "temperature", "consciousness", "on_oxygen"]
ROWS = [
    # RR 25: 3, SpO2 91 (scale 1): 3, oxygen: 2, SBP 182: 0, HR 112: 2, alert: 0, 38.6 °C: 1 -> NEWS2 11
    ["w1", "2026-03-01T08:00:00Z", 112, 182, 124, 25, 91, 38.6, "A", "yes"],
    ["w1", "2026-03-01T12:00:00Z", 88, 128, 80, 18, 96, 37.0, "A", "no"],
    ["w1", "not a time", 80, 120, 80, 16, 97, 36.9, "A", "no"],  # rejected
    ["w2", "2026-03-01T09:00:00Z", 70, 118, 76, 14, 150, 36.8, "A", "no"],  # SpO2 150 %: an artefact
]


def _csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(ROWS)
    return out.getvalue().encode()


def _json() -> dict:
    readings = []
    for row in ROWS:
        reading = dict(zip(COLUMNS, row))
        reading["on_oxygen"] = reading["on_oxygen"] == "yes"
        readings.append(reading)
    return {"readings": readings}


@pytest.fixture()
def api(settings):
    # Scoring vitals loads no model: the version folder is never read.
    return make_api(settings, settings.data_dir / "no-model")


def test_csv_body_upload_and_json_readings_give_the_same_news2_and_nothing_is_stored(api):
    headers = api.auth("cli")
    as_csv = api.client.post(SCORE, content=_csv(), headers={**headers, "Content-Type": "text/csv"})
    as_file = api.client.post(SCORE, files={"file": ("ward.csv", _csv(), "text/csv")}, headers=headers)
    as_json = api.client.post(SCORE, json=_json(), headers=headers)
    for response in (as_csv, as_file, as_json):
        assert response.status_code == 200, response.text
    bodies = [r.json() for r in (as_csv, as_file, as_json)]
    assert [b["patients"] for b in bodies[1:]] == [bodies[0]["patients"]] * 2
    body = bodies[0]
    assert body["stored"] is False and body["format"] == "csv"
    assert body["rejected"] == {"count": 1, "rows": [{"where": "upload.csv line 4",
                                                      "why": "unreadable time 'not a time'"}]}
    assert bodies[1]["rejected"]["rows"][0]["where"] == "ward.csv line 4"
    assert bodies[2]["rejected"]["rows"][0]["where"] == "readings[2]"
    assert [(f["where"], f["parameter"]) for f in body["flagged"]["rows"]] == [("upload.csv line 5", "spo2")]
    patients = {p["patient_id"]: p for p in body["patients"]}
    first, second = patients["w1"]["news2_over_time"]
    assert first["time"] == "2026-03-01T08:00:00Z" and first["total"] == 11 and first["band"] == "high"
    assert first["points"] == {"respiration_rate": 3, "spo2": 3, "air_or_oxygen": 2, "systolic_bp": 0,
                               "heart_rate": 2, "consciousness": 0, "temperature": 1}
    assert first["values"]["consciousness"] == "A" and first["values"]["on_oxygen"] is True
    assert second["total"] == 0 and patients["w1"]["news2"]["total"] == 0
    alert = next(a for a in patients["w1"]["alerts"] if a["rule_id"] == "news2_high")
    assert alert["readings"][0] == {"time": "2026-03-01T08:00:00Z", "value": 11.0}
    assert patients["w1"]["bp"]["category"] == "stage 2 hypertension"
    assert patients["w1"]["summary"].startswith("on supplemental oxygen; NEWS2 max 11 (high)")
    # The artefact is not scored: SpO2 counts as not measured.
    assert patients["w2"]["news2"]["complete"] is False and "spo2" in patients["w2"]["news2"]["missing"].lower()
    assert patients["w2"]["news2_over_time"][0]["points"]["spo2"] is None
    assert stored_patient_count(api.factory) == 0
    # Options: the query for uploads, the body for JSON.
    home = api.client.post(SCORE + "?setting=home&spo2_scale=2", content=_csv(),
                           headers={**headers, "Content-Type": "text/csv"}).json()
    scored = {p["patient_id"]: p for p in home["patients"]}["w1"]
    assert scored["setting"] == {"setting": "home", "basis": "given"} and scored["spo2_scale"]["scale"] == 2
    assert scored["news2_over_time"][0]["points"]["spo2"] == 0  # 91 % with oxygen is on target on scale 2
    assert api.client.post(SCORE, json={**_json(), "setting": "home", "spo2_scale": 2},
                           headers=headers).json()["patients"] == home["patients"]


def test_refusals_are_problems_with_expected_found_and_fix(api):
    headers = {**api.auth("cli"), "Content-Type": "text/csv"}
    assert api.client.post(SCORE, content=_csv(), headers={"Content-Type": "text/csv"}).status_code == 401
    denied = api.client.post(SCORE, content=_csv(), headers={**api.auth("ann"), "Content-Type": "text/csv"})
    assert denied.status_code == 403 and "vitals upload" in denied.json()["expected"]
    for content, found in ((b"", "upload.csv: empty"), (b"\x00\x01\x02garbled", "binary data"),
                           (b"colour,shape\nred,round\n", "columns 'colour', 'shape'")):
        refused = api.client.post(SCORE, content=content, headers=headers)
        problem = refused.json()
        assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
        assert found in problem["found"] and problem["expected"] and problem["fix"]
    unknown = api.client.post(SCORE, json={"readings": [{"patient_id": "x", "time": "2026-03-01", "pulsee": 80}]},
                              headers=api.auth("cli"))
    assert unknown.status_code == 400 and "'pulsee'" in unknown.json()["found"]
    two_names = api.client.post(SCORE, json={"readings": [{"patient_id": "x", "time": "2026-03-01", "hr": 80},
                                                          {"patient_id": "x", "time": "2026-03-02", "pulse": 82}]},
                                headers=api.auth("cli"))
    assert two_names.status_code == 400 and "'pulse'" in two_names.json()["found"]
    assert api.client.post(SCORE, json={"readings": []}, headers=api.auth("cli")).status_code == 422
    assert api.client.post(SCORE, json={**_json(), "spo2_scale": 3}, headers=api.auth("cli")).status_code == 422
    mixed = api.client.post(SCORE + "?setting=home", json=_json(), headers=api.auth("cli"))
    assert mixed.status_code == 400 and "JSON body" in mixed.json()["fix"]
    no_file = api.client.post(SCORE, data={"setting": "home"}, files={"other": ("a.csv", _csv(), "text/csv")},
                              headers=api.auth("cli"))
    assert no_file.status_code == 400
    assert api.client.post(SCORE, content=b"<x/>", headers={**api.auth("cli"), "Content-Type": "application/xml"}
                           ).status_code == 415
    operation = api.client.get("/api/v1/openapi.json").json()["paths"]["/vitals:score"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data", "text/csv"}
    assert "readings" in content["application/json"]["schema"]["properties"]
    assert "stores nothing" in operation["description"]


def test_the_case_report_as_fhir_html_and_pdf(settings, notes):
    api = make_api(settings, trained_version(settings, notes))
    hostile = "Polyuria and thirst; HbA1c 8.9%. <script>alert('x')</script> metformin started."
    scored = api.client.post("/api/v1/models/active:predict?store=true", headers=api.auth("cli"),
                             json={"instances": [{"text": hostile, "note_id": "n1", "patient_id": "P-7"}]})
    assert scored.status_code == 200, scored.text
    probabilities = scored.json()["predictions"][0]["probabilities"]
    ward = b"timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU\n2026-03-01 08:00,P-7,118,150/92,93,23,38.4,A\n"
    data = read_device_files([("ward.csv", ward)])
    store_vitals(api.factory, "tests", data.frame, source="ward.csv", fmt=data.fmt, report=data.report)
    url = "/api/v1/patients/P-7/report"

    fhir = api.client.get(url, params={"format": "fhir"}, headers=api.auth("cli"))
    assert fhir.status_code == 200, fhir.text
    assert fhir.headers["content-type"] == "application/fhir+json"
    assert 'filename="healthmon-report-P-7.fhir.json"' in fhir.headers["content-disposition"]
    resources = [e["resource"] for e in json.loads(fhir.content)["entry"]]
    assert [r["resourceType"] for r in resources] == ["Patient", "RiskAssessment", "Observation"]
    predicted = {p["outcome"]["text"]: p["probabilityDecimal"] for p in resources[1]["prediction"]}
    assert predicted == {label: pytest.approx(100 * p, abs=1e-3) for label, p in probabilities.items()}
    assert resources[2]["valueInteger"] == 7  # RR 23: 2, SpO2 93: 2, HR 118: 2, 38.4 °C: 1

    html = api.client.get(url, params={"format": "html"}, headers=api.auth("ada"))
    assert html.status_code == 200 and html.headers["content-type"] == "text/html; charset=utf-8"
    page = html.text
    # The note is shown word by word in the explanation's highlight, every piece escaped.
    assert "<script" not in page and ">&lt;</span>" in page and ">script</span>" in page
    assert "by ada (api)" in page
    pdf = api.client.get(url, params={"format": "pdf", "explain": "false"}, headers=api.auth("cli"))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and pdf.headers["content-disposition"].endswith('.pdf"')

    missing = api.client.get("/api/v1/patients/P-404/report", params={"format": "fhir"}, headers=api.auth("cli"))
    assert missing.status_code == 404 and missing.json()["found"] == "no patient 'P-404'"
    assert api.client.get(url, params={"format": "docx"}, headers=api.auth("cli")).status_code == 422
    assert api.client.get(url, headers=api.auth("cli")).status_code == 422  # the format is required
    assert api.client.get(url, params={"format": "fhir"}, headers=api.auth("ann")).status_code == 403
    assert api.client.get(url, params={"format": "fhir"}).status_code == 401
