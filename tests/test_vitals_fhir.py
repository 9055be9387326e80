"""FHIR R4 Bundles and bulk NDJSON: LOINC vitals, units, artefacts, rejections, conditions, notes, patients."""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from healthmon.errors import IngestError
from healthmon.ingest.fhir import (
    CONDITION_COLUMNS,
    VITAL_CODES,
    condition_label,
    read_fhir,
    read_fhir_files,
)
from healthmon.vitals.parameters import COLUMNS

LOINC = "http://loinc.org"


def concept(code: str, display: str | None = None, system: str = LOINC) -> dict:
    return {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}]}


def quantity(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def observation(code: str, value: float | None = None, unit: str = "", *, patient: str = "Patient/p1",
                time: str = "2026-03-01T08:00:00+01:00", display: str | None = None, **extra) -> dict:
    resource = {"resourceType": "Observation", "status": "final", "code": concept(code, display),
                "subject": {"reference": patient}, "effectiveDateTime": time, **extra}
    if value is not None:
        resource["valueQuantity"] = quantity(value, unit)
    return resource


def bp_panel(code: str, systolic: float | None, diastolic: float | None, **extra) -> dict:
    parts = [("8480-6", systolic), ("8462-4", diastolic)]
    components = [{"code": concept(c), "valueQuantity": quantity(v, "mm[Hg]")} for c, v in parts if v is not None]
    return observation(code, component=components, **extra)


def ndjson(*resources: dict | str) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in resources).encode()


def bundle(*resources: dict, kind: str = "collection") -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]},
                      indent=2).encode()


def values(frame: pd.DataFrame) -> dict[str, list[float]]:
    return {p: list(g["value"]) for p, g in frame.groupby("parameter")}


# ----------------------------------------------------------------------------------- fast


def test_every_mapped_loinc_code_lands_on_its_parameter_in_canonical_units():
    data = read_fhir(ndjson(
        observation("8867-4", 72, "/min"),
        observation("9279-1", 16, "/min"),
        observation("59408-5", 97, "%"),
        observation("2708-6", 95, "%", time="2026-03-01T09:00:00Z"),
        observation("8310-5", 98.6, "[degF]"),
        observation("8480-6", 131, "mm[Hg]"),
        observation("8462-4", 79, "mm[Hg]"),
        bp_panel("85354-9", 120, 80, time="2026-03-01T09:00:00Z"),
        bp_panel("55284-4", 118, 76, time="2026-03-01T10:00:00Z"),
        observation("29463-7", 154, "[lb_av]"),
        observation("29463-7", 70000, "g", time="2026-03-01T09:00:00Z"),
        observation("2339-0", 5.5, "mmol/L", patient="urn:uuid:p2"),
        observation("2345-7", 100, "mg/dL", patient="urn:uuid:p2"),
        observation("41950-7", 8000, "{steps}"),
        observation("55423-8", valueInteger=500, time="2026-03-01T09:00:00Z"),
        observation("4548-4", 6.1, "%", display="Hemoglobin A1c/Hemoglobin.total in Blood"),
        observation("72166-2", valueCodeableConcept=concept("266919005", "Never smoker", "http://snomed.info/sct")),
        observation("8889-8", 74, "/min", time="2026-03-01T09:00:00Z"),
        observation("8331-1", 36.8, "Cel", time="2026-03-01T09:00:00Z"),
        observation("8328-7", 36.5, "Cel", time="2026-03-01T10:00:00Z"),
        observation("8333-7", 37.9, "Cel", time="2026-03-01T11:00:00Z"),
        observation("8332-9", 38.2, "Cel", time="2026-03-01T12:00:00Z"),
    ), "vitals.ndjson")
    frame, report = data.frame, data.report
    assert list(frame.columns) == COLUMNS and str(frame["time"].dt.tz) == "UTC"
    assert set(frame.parameter) == set(VITAL_CODES.values()) | {"lab:Hemoglobin A1c/Hemoglobin.total in Blood"}
    p1 = values(frame[frame.patient_id == "p1"])
    assert p1["heart_rate"] == [72, 74] and p1["respiration_rate"] == [16] and p1["spo2"] == [97, 95]
    assert p1["temperature"] == [pytest.approx(37.0), 36.8, 36.5, 37.9, 38.2]  # body, oral, axilla, ear, rectal
    assert p1["systolic_bp"] == [131, 120, 118] and p1["diastolic_bp"] == [79, 80, 76]
    assert p1["weight"] == [pytest.approx(69.85, abs=0.01), 70.0] and p1["steps"] == [8000, 500]
    assert p1["lab:Hemoglobin A1c/Hemoglobin.total in Blood"] == [6.1]
    assert values(frame[frame.patient_id == "p2"])["glucose"] == [pytest.approx(99.09, abs=0.01), 100]
    # +01:00 in the file is 07:00 UTC in the table.
    assert frame.loc[frame.parameter == "heart_rate", "time"].iloc[0] == pd.Timestamp("2026-03-01 07:00", tz="UTC")
    assert not frame["artefact"].any() and report.values_flagged == 0
    assert set(report.observations_mapped) == set(VITAL_CODES) - {"8480-6", "8462-4"} | {"8480-6", "8462-4",
                                                                                          "85354-9", "55284-4"}
    assert report.observations_unmapped == {"4548-4": 1} and report.observations_not_numeric == {"72166-2": 1}
    assert report.lab_codes == {"lab:Hemoglobin A1c/Hemoglobin.total in Blood": "4548-4"}
    assert report.conversions == ["glucose: 1 value(s) in mmol/L converted to mg/dL",
                                  "temperature: 1 value(s) in [degF] converted to °C",
                                  "weight: 1 value(s) in [lb_av] converted to kg",
                                  "weight: 1 value(s) in g converted to kg"]
    assert report.resources_read == {"Observation": 22} and report.rejected == []


def test_supplemental_oxygen_from_the_pulse_oximetry_components_sets_the_news2_oxygen_row():
    def pulse_ox(time: str, **components: tuple[float, str]) -> dict:
        parts = [{"code": concept(code), "valueQuantity": quantity(value, unit)}
                 for code, (value, unit) in components.items()]
        return observation("59408-5", 94, "%", time=time, component=parts)

    data = read_fhir(ndjson(
        pulse_ox("2026-03-01T08:00:00Z", **{"3151-8": (0, "L/min")}),  # the flow is off: air
        # Flow on beside a concentration of 21 %: oxygen, whichever component comes first.
        pulse_ox("2026-03-01T09:00:00Z", **{"3151-8": (2, "L/min"), "3150-0": (21, "%")}),
        pulse_ox("2026-03-01T10:00:00Z", **{"3150-0": (21, "%"), "3151-8": (2, "L/min")}),
        pulse_ox("2026-03-01T11:00:00Z", **{"3150-0": (21, "%")}),  # room air
        pulse_ox("2026-03-01T12:00:00Z", **{"3151-8": (2, "mL/s")}),  # a unit it cannot judge
        pulse_ox("2026-03-01T13:00:00Z", **{"3150-0": (0.4, "%")}),  # a fraction written as a percentage
    ), "oximeter.ndjson")
    oxygen = data.frame[data.frame.parameter == "on_oxygen"]
    assert len(oxygen) == 6  # one row per Observation
    assert oxygen["value"].iloc[:4].tolist() == [0.0, 1.0, 1.0, 0.0] and not oxygen["artefact"].iloc[:4].any()
    assert oxygen["artefact"].iloc[4:].all()
    assert [why for _, parameter, why in data.report.flagged if parameter == "on_oxygen"] == [
        "2 mL/s is not an oxygen flow in L/min", "0.4 % is not an oxygen concentration of 21-100 %"]
    # The numbers themselves are kept (and counted once each: 6 SpO2 + 8 oxygen numbers), and the
    # oxygen makes a NEWS2 score on scale 1 two points higher.
    assert values(data.frame)["lab:Inhaled oxygen flow rate"] == [0, 2, 2, 2]
    assert data.report.values_read == 6 + 8
    from healthmon.vitals.series import news2_over_time

    points = news2_over_time(data.frame, lookback="30min").set_index("time")["points_air_or_oxygen"]
    assert points.tolist()[:4] == [0, 2, 2, 0]


def test_uk_core_acvpu_observations_give_the_news2_consciousness_level_and_an_unknown_answer_is_flagged():
    snomed = "http://snomed.info/sct"

    def acvpu(time: str, answer: str | None, text: str | None = None) -> dict:
        resource = observation("1104441000000107", time=time, display="ACVPU scale score")
        resource["code"] = concept("1104441000000107", "ACVPU scale score", system=snomed)
        if answer is not None or text is not None:
            resource["valueCodeableConcept"] = ({**concept(answer, system=snomed), **({"text": text} if text else {})}
                                                if answer else {"text": text})
        else:
            resource["dataAbsentReason"] = {"text": "not assessed"}
        return resource

    answers = ["248234008", "130987000", "300202002", "450847001", "422768004"]  # A, C, V, P, U
    data = read_fhir(ndjson(
        *(acvpu(f"2026-03-01T0{hour}:00:00Z", code) for hour, code in enumerate(answers)),
        acvpu("2026-03-01T05:00:00Z", None, "Responds to voice"),  # text only: the level it names
        acvpu("2026-03-01T06:00:00Z", "1234567", "agitated"),  # names no level: flagged, not read as A
        acvpu("2026-03-01T07:00:00Z", None),  # not assessed (a dataAbsentReason)
        {**acvpu("2026-03-01T08:00:00Z", None, "x"), "valueCodeableConcept": None, "valueString": "P"},
        acvpu("2026-03-01T09:00:00Z", None, "N"),  # one letter, but not a level
        {**acvpu("2026-03-01T10:00:00Z", None, "x"), "valueCodeableConcept": None, "valueInteger": 2},
    ), "ward.ndjson")
    levels = data.frame[data.frame.parameter == "consciousness"]
    assert levels["value"].iloc[:6].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 2.0] and not levels["artefact"].iloc[:6].any()
    assert levels["value"].iloc[7] == 3.0 and not levels["artefact"].iloc[7]  # valueString "P"
    unread = levels.iloc[[6, 8, 9]]
    assert unread["value"].isna().all() and unread["artefact"].all() and len(levels) == 10
    naming = "is not Alert, new Confusion, Voice, Pain or Unresponsive (SNOMED 248234008, 130987000, 300202002, " \
             "450847001, 422768004)"
    assert [why for _, parameter, why in data.report.flagged if parameter == "consciousness"] == [
        f"ACVPU answer 1234567 'agitated' {naming}", f"ACVPU answer (no SNOMED code) 'N' {naming}",
        f"an ACVPU Observation with neither a coded answer, a text answer nor a dataAbsentReason {naming}"]
    assert data.report.observations_mapped == {"1104441000000107": 10}
    assert data.report.observations_not_numeric == {"1104441000000107": 1}
    assert data.report.values_read == 10 and data.report.values_flagged == 3
    from healthmon.vitals.series import news2_over_time

    points = news2_over_time(data.frame, lookback="30min")["points_consciousness"].tolist()
    assert points[:6] == [0, 3, 3, 3, 3, 3]  # anything but Alert scores 3 (RCP 2017)


def test_implausible_values_and_unknown_units_are_flagged_and_a_missing_bp_component_is_allowed():
    data = read_fhir(bundle(
        observation("8867-4", 400, "/min"),
        observation("8310-5", 310, "K"),
        bp_panel("55284-4", 150, None),
    ), "ward.json")
    frame, report = data.frame, data.report
    heart = frame[frame.parameter == "heart_rate"].iloc[0]
    assert heart.value == 400 and heart.artefact  # kept, never scored
    temperature = frame[frame.parameter == "temperature"].iloc[0]
    assert math.isnan(temperature.value) and temperature.artefact
    assert ("ward.json entry 1", "heart_rate", "400 /min is implausible") in report.flagged
    assert ("ward.json entry 2", "temperature", "310 K cannot be converted to °C") in report.flagged
    assert report.values_flagged == 2 and report.values_read == 3
    assert frame[frame.parameter == "systolic_bp"].value.tolist() == [150] and "diastolic_bp" not in set(
        frame.parameter)
    assert report.warnings == ["ward.json entry 3: blood-pressure panel 55284-4 has no diastolic component (8462-4)"]


def test_a_value_given_as_a_bound_is_flagged_not_read_as_exact():
    meter_high = observation("2339-0", 600, "mg/dL")  # glucose "HI": > 600 mg/dL
    meter_high["valueQuantity"]["comparator"] = ">"
    fast = observation("8867-4", 150, "/min")
    fast["valueQuantity"]["comparator"] = ">="
    data = read_fhir(bundle(meter_high, fast, observation("8867-4", 88, "/min", time="2026-03-01T09:00:00Z")),
                     "meter.json")
    frame = data.frame.set_index("parameter")
    glucose = frame.loc[[p for p in frame.index if "lab:" in p or p == "glucose"]]
    assert glucose["artefact"].all() and glucose["value"].isna().all()
    assert frame.loc["heart_rate"].value.tolist()[1] == 88  # the plain reading is read as it is
    assert ("meter.json entry 2", "heart_rate", ">=150 /min is a bound, not a reading: not scored") in data.report.flagged
    assert data.report.values_flagged == 2
    # An oxygen flow given as "> 4 L/min" is not a number to chart, but it proves oxygen is given.
    flow = {"code": concept("3151-8"), "valueQuantity": {**quantity(4, "L/min"), "comparator": ">"}}
    oximeter = read_fhir(ndjson(observation("59408-5", 94, "%", component=[flow])), "ox.ndjson")
    assert oximeter.frame[oximeter.frame.parameter == "on_oxygen"].value.tolist() == [1.0]


def test_resources_the_library_refuses_and_lines_that_are_not_json_are_listed_not_dropped():
    good = observation("8867-4", 70, "/min")
    no_code = {k: v for k, v in good.items() if k != "code"}
    text_value = {**good, "valueQuantity": {"value": "seventy", "unit": "/min"}}
    data = read_fhir(ndjson(good, no_code, "{not json", "", text_value, {"resourceType": "Foo"},
                            observation("8867-4", 71, "/min", status="entered-in-error"),
                            observation("8867-4", 72, "/min", patient="Group/g1")), "obs.ndjson")
    rejected = dict(data.report.rejected)
    assert len(data.frame) == 1 and data.report.resources_rejected == 6
    assert rejected["obs.ndjson line 2"] == "code: Field required"
    assert rejected["obs.ndjson line 3"].startswith("not JSON (")
    assert "line 4" not in " ".join(rejected)  # blank lines are not records
    assert rejected["obs.ndjson line 5"].startswith("valueQuantity.value: ")
    assert rejected["obs.ndjson line 6"] == "Foo is not a valid FHIR Model"
    assert "entered-in-error" in rejected["obs.ndjson line 7"] and "Patient" in rejected["obs.ndjson line 8"]
    assert data.report.resources_read == {"Observation": 5, "Foo": 1}
    in_bundle = read_fhir(bundle(good, no_code), "b.json")
    assert in_bundle.report.rejected == [("b.json entry 2", "code: Field required")]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "an empty file"),
    (b"  \n\n", "an empty file"),
    (b'{"hello": "world"}', "without resourceType"),
    (b"[1, 2]", "a JSON list"),
    (b'{"resourceType": "Bundle", "entry": []}', "type: Value for the field 'type' is required"),
    (json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": "Unknown patient"}]}).encode(), "Unknown patient"),
    (b'{\n "resourceType": "Bundle",\n "type": "collection"\n "entry": []\n}', "breaks at line 4"),
    (b"date,hr\n2026-01-01,70\n", "no line is a FHIR resource"),
    ('{"resourceType": "Bundle"}'.encode("utf-16"), "not UTF-8"),
])
def test_a_file_that_is_not_fhir_at_all_says_what_was_expected(data, message):
    with pytest.raises(IngestError, match="FHIR|UTF-8|Bundle") as caught:
        read_fhir(data, "upload.json")
    assert message in str(caught.value) and "Fix:" in str(caught.value)


def test_missing_files_and_an_empty_file_list_are_refused(tmp_path):
    with pytest.raises(IngestError, match="no file at"):
        read_fhir(tmp_path / "nothing.ndjson")
    with pytest.raises(IngestError, match="no files"):
        read_fhir_files([])


def test_document_references_become_notes_and_bad_attachments_are_counted():
    def document(rid: str, data: str, content_type: str = "text/plain; charset=utf-8") -> dict:
        return {"resourceType": "DocumentReference", "id": rid, "status": "current",
                "subject": {"reference": "Patient/p1"}, "date": "2026-02-01T10:30:00-05:00",
                "content": [{"attachment": {"contentType": content_type, "data": data}}]}

    text = "Chief complaint: polyuria.\nHbA1c 8.9 %."
    encoded = base64.b64encode(text.encode()).decode()
    payload = ndjson(document("d1", encoded), document("d2", "not base64!!"), document("d3", encoded, "application/pdf"),
                     document("d4", "////"))
    data = read_fhir(payload, "notes.ndjson")
    notes = data.notes
    assert [(n.note_id, n.patient_id, n.text, n.source, n.line) for n in notes.notes] == [
        ("d1", "p1", text, "notes.ndjson", 1)]
    assert data.note_dates == {"d1": pd.Timestamp("2026-02-01 15:30", tz="UTC")}
    assert notes.report.rows_read == 4 and notes.report.rows_accepted == 1 and notes.report.rows_rejected == 3
    reasons = {row.line: row.reason for row in notes.report.rejected}
    assert "Base64 decoding error" in reasons[2]  # refused by the library: the resource is rejected too
    assert "'application/pdf' is not text/plain" in reasons[3] and "not utf-8 text" in reasons[4]
    assert [where for where, _ in data.report.rejected] == ["notes.ndjson line 2"]
    # The upload's report lists every refusal once: the resource the library refused, and the
    # attachments that are not text (on the Vitals page and in the CLI, not only on the Notes page).
    from healthmon.ingest.devices import read_device_files

    device = read_device_files({"notes.ndjson": payload})
    assert [where for where, _ in device.rejected] == ["notes.ndjson line 2", "notes.ndjson line 3",
                                                       "notes.ndjson line 4"]
    assert "'application/pdf' is not text/plain" in device.rejected[1][1]
    assert "1 note(s) from DocumentReference, 2 attachment(s) not readable as a note." in device.summary[1]


def test_conditions_keep_snomed_code_onset_and_status_and_displays_map_to_labels():
    condition = {"resourceType": "Condition", "clinicalStatus": concept("active", system="x"),
                 "code": concept("44054006", "Diabetes mellitus type 2 (disorder)", "http://snomed.info/sct"),
                 "subject": {"reference": "urn:uuid:p9"}, "onsetDateTime": "2020-05-01T12:00:00+02:00"}
    data = read_fhir(ndjson(condition, {**condition, "subject": None}), "c.ndjson")
    assert list(data.conditions.columns) == CONDITION_COLUMNS
    assert data.conditions.iloc[0].tolist() == ["p9", "44054006", "Diabetes mellitus type 2 (disorder)",
                                                pd.Timestamp("2020-05-01 10:00", tz="UTC"), "active"]
    assert data.report.conditions == 1 and data.report.rejected[0][0] == "c.ndjson line 2"
    # Coded in ICD-10-CM only: listed under that code, not as a blank row; a refuted one is not listed.
    icd = {**condition, "code": concept("E11.9", "Type 2 diabetes mellitus without complications",
                                        "http://hl7.org/fhir/sid/icd-10-cm")}
    refuted = {**condition, "verificationStatus": concept("refuted", system="http://terminology.hl7.org/CodeSystem/"
                                                                            "condition-ver-status")}
    other = read_fhir(ndjson(icd, refuted), "icd.ndjson")
    assert other.conditions[["code", "display"]].values.tolist() == [
        ["ICD-10-CM E11.9", "Type 2 diabetes mellitus without complications"]]
    assert other.report.conditions == 1 and "1 Condition(s) with verificationStatus refuted not listed" in other.report.warnings
    expected = {"Diabetes mellitus type 2 (disorder)": "diabetes", "Prediabetes": "prediabetes",
                "Proteinuria due to type 2 diabetes mellitus (disorder)": "diabetes", "Diabetes insipidus": None,
                "Essential hypertension (disorder)": "hypertension", "Hypertension": "hypertension",
                "Pulmonary hypertension": None, "Hypertriglyceridemia (disorder)": None,
                "Malignant neoplasm of breast (disorder)": "cancer", "Non-small cell lung cancer (disorder)": "cancer",
                "Non-small cell carcinoma of lung, TNM stage 1 (disorder)": "cancer",
                "Suspected lung cancer (situation)": None, "Benign neoplasm of skin": None, "Acute bronchitis": None}
    assert {display: condition_label(display) for display in expected} == expected


def test_patients_are_counted_once_across_files_and_linked_records_are_one_person(tmp_path):
    def patient(pid: str, **extra) -> dict:
        return {"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01", "gender": "female", **extra}

    link = [{"other": {"reference": "Patient/a"}, "type": "replaced-by"}]
    (tmp_path / "Patient.000.ndjson").write_bytes(ndjson(patient("a"), patient("b", link=link), patient("a"),
                                                         patient("c", birthDate="1960-01-01")))
    (tmp_path / "Observation.000.ndjson").write_bytes(ndjson(observation("8867-4", 70, "/min", patient="Patient/c")))
    data = read_fhir_files(sorted(tmp_path.glob("*.ndjson")))
    report = data.report
    assert report.patient_records == 3 and report.patients == 2  # b is replaced by a; the second a is a duplicate
    assert report.duplicates == ["Patient/a"] and report.linked_patients == [("b", "replaced-by", "a")]
    assert ("Patient.000.ndjson line 3", "duplicate Patient/a (first read at Patient.000.ndjson line 1)") in (
        report.rejected)
    assert any("a, b share birth date 1950-01-01" in w for w in report.warnings)
    assert data.frame.source.tolist() == ["fhir:Observation.000.ndjson"]


# ------------------------------------------------------------------------------ real data


def _shared(folder: str) -> Path:
    from conftest import SHARED_DATA

    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


def _loinc(resource: dict) -> str | None:
    return next((c["code"] for c in resource.get("code", {}).get("coding", []) if c.get("system") == LOINC), None)


def test_synthea_bundle_counts_match_the_files():
    folder = _shared("fhir-synthea-bundles")
    paths = sorted(folder.glob("*.json"))
    assert len(paths) == 6
    hba1c = {}
    for path in paths:
        resources = [e["resource"] for e in json.loads(path.read_text())["entry"]]
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        codes = Counter(_loinc(r) for r in observations)
        components = Counter(_loinc(c) for r in observations for c in r.get("component", []))
        quantities = sum("valueQuantity" in r for r in observations) + sum(
            "valueQuantity" in c for r in observations for c in r.get("component", []))
        patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")

        data = read_fhir(path)
        frame, report = data.frame, data.report
        assert report.resources_read == dict(Counter(r["resourceType"] for r in resources)), path.name
        assert report.rejected == [] and report.values_flagged == 0 and report.warnings == []
        counts = frame.groupby("parameter").size().to_dict()
        # Every 55284-4 panel carries both components, so each gives one systolic and one diastolic row.
        assert counts["systolic_bp"] == counts["diastolic_bp"] == codes["55284-4"] == components["8480-6"]
        assert counts["weight"] == codes["29463-7"] and counts.get("glucose", 0) == codes["2339-0"]
        assert report.observations_mapped["55284-4"] == codes["55284-4"]
        assert len(frame) == report.values_read == quantities  # every number read is in the table
        assert report.observations_not_numeric == {"72166-2": codes["72166-2"]}  # smoking status is a code
        assert len(data.conditions) == sum(r["resourceType"] == "Condition" for r in resources)
        assert set(frame.patient_id) == set(data.conditions.patient_id) == {patient_id}
        assert report.patients == report.patient_records == 1
        hba1c[path.name.split("_")[1]] = codes["4548-4"]
        assert counts.get("lab:Hemoglobin A1c/Hemoglobin.total in Blood", 0) == codes["4548-4"]
    # SOURCE.md: "Fabian_Murray 2, Louis_Maggio 2, Jeffry_Jenkins 1, Maida_Gerhold 4".
    assert {k: v for k, v in hba1c.items() if v} == {"Murray": 2, "Maggio": 2, "Jenkins": 1, "Gerhold": 4}


def test_bulk_ndjson_counts_match_the_files():
    folder = _shared("fhir-bulk-10patients")
    lines = {name: [json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()]
             for name in ("Patient.000.ndjson", "Condition.000.ndjson", "DocumentReference.000.ndjson")}
    assert {name: len(rows) for name, rows in lines.items()} == {
        "Patient.000.ndjson": 13, "Condition.000.ndjson": 555, "DocumentReference.000.ndjson": 1215}  # SOURCE.md

    data = read_fhir_files(folder / name for name in lines)
    report = data.report
    assert report.resources_read == {"Patient": 13, "Condition": 555, "DocumentReference": 1215}
    assert report.rejected == [] and report.duplicates == [] and len(data.frame) == 0
    # 13 Patient records, 13 distinct ids and no Patient.link: 13 people. The repeated birth
    # dates SOURCE.md mentions are two groups of look-alikes (same date, gender and town).
    patients = lines["Patient.000.ndjson"]
    assert len({p["id"] for p in patients}) == 13 and not any("link" in p for p in patients)
    assert report.patients == report.patient_records == 13
    births = Counter((p["birthDate"], p["gender"], p["address"][0]["city"]) for p in patients)
    assert sorted(n for n in births.values() if n > 1) == [2, 3] and len(report.warnings) == 2
    assert sum("deceasedDateTime" in p for p in patients) == 3  # 10 living patients, as the set's name says

    conditions = lines["Condition.000.ndjson"]
    assert len(data.conditions) == report.conditions == 555
    assert data.conditions.clinical_status.value_counts().to_dict() == dict(
        Counter(c["clinicalStatus"]["coding"][0]["code"] for c in conditions))
    displays = Counter(c["code"]["coding"][0]["display"] for c in conditions)
    labels = Counter(data.conditions.display.map(condition_label).dropna())
    assert labels["prediabetes"] == displays["Prediabetes"] == 5  # SOURCE.md
    assert labels["hypertension"] == displays["Essential hypertension (disorder)"] == 2
    diabetes = [d for d in displays if re.search("diabetes", d, re.IGNORECASE) and d != "Prediabetes"]
    assert labels["diabetes"] == sum(displays[d] for d in diabetes) == 4  # T2DM and three of its complications
    assert labels["cancer"] == 3  # breast, NSCLC, NSCLC stage 1; "Suspected lung cancer" is not a diagnosis

    documents = lines["DocumentReference.000.ndjson"]
    notes = data.notes
    assert len(notes.notes) == notes.report.rows_accepted == notes.report.rows_read == 1215
    first = documents[0]
    assert notes.notes[0].text == base64.b64decode(first["content"][0]["attachment"]["data"]).decode()
    assert notes.notes[0].patient_id == first["subject"]["reference"].removeprefix("Patient/")
    assert Counter(n.patient_id for n in notes.notes) == Counter(
        d["subject"]["reference"].removeprefix("Patient/") for d in documents)
    assert all(data.note_dates[n.note_id] is not None for n in notes.notes)


def test_the_bulk_export_log_is_not_fhir_and_is_refused():
    folder = _shared("fhir-bulk-10patients")
    with pytest.raises(IngestError, match="no line is a FHIR resource"):
        read_fhir(folder / "log.ndjson")


def test_a_document_reference_note_gets_the_checks_every_note_gets():
    damaged = "Chief complaint:\x07 polyuria."  # a control character, as an uploaded note would be refused for
    payload = ndjson({"resourceType": "DocumentReference", "id": "d1", "status": "current",
                      "subject": {"reference": "Patient/p1"},
                      "content": [{"attachment": {"contentType": "text/plain",
                                                  "data": base64.b64encode(damaged.encode()).decode()}}]})
    notes = read_fhir(payload, "notes.ndjson").notes
    assert len(notes.notes) == 0 and notes.report.rows_rejected == 1
    assert "control character" in notes.report.rejected[0].reason and "U+0007" in notes.report.rejected[0].reason
