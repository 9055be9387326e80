"""A patient's findings as FHIR R4 resources: RiskAssessment per scored note, Observation for NEWS2.

Built as plain dicts and validated by the same library and release the ingest parses with
(``fhir.resources``' R4B models: see :mod:`healthmon.ingest.fhir`), so what we export is
exactly what we would accept back. Resources reference each other by ``urn:uuid`` inside a
``collection`` Bundle; the uuids are derived from the patient and case ids, so exporting the
same patient twice gives the same ids.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from healthmon import __version__
from healthmon.advice.snapshot import PatientSnapshot
from healthmon.errors import ModelError
from healthmon.escaping import escape_markdown
from healthmon.vitals.series import news2_points

NAMESPACE = uuid.UUID("6f1d4a52-6a4e-4f43-9a0e-3c1f5d2b7e11")  # healthmon's own uuid5 namespace
PATIENT_SYSTEM = "urn:healthmon:patient"
CASE_SYSTEM = "urn:healthmon:case"
SNOMED = "http://snomed.info/sct"
# SNOMED CT UK edition: "Royal College of Physicians National Early Warning Score 2 (NEWS2) total score".
NEWS2_CODE = {"system": SNOMED, "code": "1104051000000101",
              "display": "Royal College of Physicians National Early Warning Score 2 (NEWS2) total score"}
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _urn(*parts: Any) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '/'.join(map(str, parts)))}"


def _instant(moment: Any) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def fhir_bundle(snapshot: PatientSnapshot) -> dict:
    """The Bundle as a JSON-ready dict, validated (raises pydantic's ValidationError if not)."""
    patient_ref = _urn("patient", snapshot.patient_id)
    patient: dict[str, Any] = {"resourceType": "Patient",
                               "identifier": [{"system": PATIENT_SYSTEM, "value": snapshot.patient_id}]}
    if snapshot.birth_date is not None:
        patient["birthDate"] = snapshot.birth_date.isoformat()
    if snapshot.sex is not None:
        patient["gender"] = snapshot.sex
    entries = [{"fullUrl": patient_ref, "resource": patient}]
    for case in snapshot.cases:
        if not case.probabilities or case.regression:
            continue  # a RiskAssessment holds probabilities; a regression version's value is not one
        reviewed = case.final_labels is not None
        assessment = {
            "resourceType": "RiskAssessment",
            "identifier": [{"system": CASE_SYSTEM, "value": str(case.note_id)}],
            # Reviewed by a person: final; a model score nobody has checked: preliminary.
            "status": "final" if reviewed else "preliminary",
            "subject": {"reference": patient_ref},
            "occurrenceDateTime": _instant(case.scored_at),
            "method": {"text": f"healthmon {__version__} text classifier, model version {case.version}; "
                               "calibrated probabilities"},
            # R4 defines a decimal probability as a percentage ("max = 100"); the note says so too.
            "prediction": [{"outcome": {"text": label}, "probabilityDecimal": round(100 * float(p), 4)}
                           for label, p in sorted(case.probabilities.items(), key=lambda kv: -kv[1])],
            "note": [{"text": "Probabilities are calibrated and given as percentages (0-100). "
                              f"Predicted: {', '.join(case.predicted) or 'no label above its threshold'}."
                      + (f" Reviewed label(s): {', '.join(case.final_labels) or '(none)'}." if reviewed else "")}],
        }
        entries.append({"fullUrl": _urn("case", snapshot.patient_id, case.note_id), "resource": assessment})
    vitals = snapshot.vitals
    latest = vitals.latest_news2 if vitals is not None else None
    if latest is not None:
        components = []
        for name, points in sorted(news2_points(latest).items()):
            if points is None or (isinstance(points, float) and math.isnan(points)):
                continue
            components.append({"code": {"text": f"NEWS2 points: {name}"}, "valueInteger": int(points)})
        observation = {
            "resourceType": "Observation",
            # A total with parameters missing may understate the risk: not final.
            "status": "final" if latest["complete"] else "preliminary",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
            "code": {"coding": [NEWS2_CODE], "text": "NEWS2 total score"},
            "method": {"text": f"NEWS2 (RCP 2017), SpO2 scale {vitals.spo2_scale}"},
            "subject": {"reference": patient_ref},
            "effectiveDateTime": _instant(latest["time"].to_pydatetime()),
            "valueInteger": int(latest["total"]),
            "interpretation": [{"text": f"{latest['band']} band (RCP 2017)"
                                        + (", 3 points in a single parameter" if latest["red_flag"] else "")}],
            "component": components,
        }
        # Which SpO2 scale was used changes the points for the same reading: a receiving system must see it.
        # Annotation.text is markdown, and the sentence carries a clinician's free-text reason.
        notes = [{"text": escape_markdown(snapshot.spo2_scale_sentence)}]
        if not latest["complete"]:
            notes.insert(0, {"text": f"Partial score: not measured: {latest['missing']}."})
        observation["note"] = notes
        # Scale 1 and scale 2 give two scores for one time point: two resources, never one id for both.
        scored = latest["time"].isoformat() + (":spo2-scale-2" if vitals.spo2_scale == 2 else "")
        entries.append({"fullUrl": _urn("news2", snapshot.patient_id, scored),
                        "resource": observation})
    bundle = {"resourceType": "Bundle", "type": "collection", "timestamp": _instant(snapshot.taken_at),
              "entry": entries}
    try:
        get_fhir_model_class("Bundle").model_validate(bundle)
    except ValidationError as exc:  # a bug on our side, but say what and where rather than crash
        raise ModelError("a FHIR R4 Bundle that fhir.resources validates", str(exc).splitlines()[0],
                         "report this with the patient's data shape; the PDF and HTML reports still work") from exc
    return bundle


def fhir_json(snapshot: PatientSnapshot) -> str:
    return json.dumps(fhir_bundle(snapshot), indent=2, ensure_ascii=False)
