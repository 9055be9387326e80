"""FHIR R4 Bundles and bulk NDJSON as healthmon's vitals table, conditions and notes.

Every resource is parsed and validated by ``fhir.resources`` (its ``R4B`` package: R4B is
R4 with changes limited to the medication-regulation, evidence and subscription
resources, so Observation, Condition, DocumentReference, Patient and Bundle read the same).
A resource the library refuses is rejected with the library's message and its location
(``<file> line N`` for NDJSON, ``<file> entry N`` for a Bundle, both 1-based); a file with
no readable FHIR resource at all raises :class:`~healthmon.errors.IngestError`.

* **Vitals.** Observations are mapped by LOINC code (:data:`VITAL_CODES`) to the
  parameters and units of :mod:`healthmon.vitals.parameters`; blood-pressure panels
  (:data:`BP_PANELS`) give their systolic and diastolic components, and a panel missing one
  is a missing parameter (a report warning), not an error. Units are converted through
  :data:`UNIT_CONVERSIONS` and reported; a unit that cannot be converted is flagged and
  its value left empty, as in the CSV reader. Values outside ``PLAUSIBLE`` are kept with
  ``artefact=True`` and are never scored.
* **Consciousness.** An ACVPU Observation (SNOMED CT :data:`ACVPU_CODE`, the UK Core NEWS2
  profile) is read from its coded answer (:data:`ACVPU_ANSWERS`), or its text where the code is
  another; an answer naming no level is flagged, like any implausible value.
* **Labs and everything else numeric** (HbA1c 4548-4, cholesterol, body height, BMI ...)
  are kept as given under ``lab:<LOINC display>`` (the code's text, or the code itself,
  when there is no display), like the PhysioNet reader's ``lab:NAME``, so nothing
  numeric read is lost; ``report.lab_codes`` says which code each name came from.
  Observations without a number (smoking status as a code, free text, a
  ``dataAbsentReason``) are counted in ``report.observations_not_numeric``.
* **Conditions** become a table (:data:`CONDITION_COLUMNS`); :func:`condition_label` maps a
  display to a healthmon label through the rule table :data:`CONDITION_LABELS`.
* **DocumentReference** ``text/plain`` attachments become :class:`~healthmon.types.Note`
  values in an :class:`~healthmon.types.IngestResult`, as the notes ingest returns them;
  ``Note.line`` is the NDJSON line or Bundle entry number and the note id is the
  resource id. Other content types, undecodable text and invalid base64 are listed in
  that result's report; note dates are in ``FhirData.note_dates``.
* **Patients** are counted as people: records joined by ``Patient.link`` count once, a
  repeated ``Patient`` id is a duplicate (rejected, like any repeated resource id).
  Records sharing birth date, gender and city are reported as a warning but not merged:
  Synthea re-generates a patient who died with the same birth date, gender and town,
  giving different people with different records.
"""

from __future__ import annotations

from healthmon.ingest.fhir.codes import (
    ACVPU_ANSWERS,
    ACVPU_CODE,
    BP_PANELS,
    CONDITION_LABELS,
    UNIT_CONVERSIONS,
    VITAL_CODES,
    condition_label,
)
from healthmon.ingest.fhir.reader import (
    CONDITION_COLUMNS,
    FhirData,
    FhirReport,
    read_fhir,
    read_fhir_bytes,
    read_fhir_files,
)

__all__ = [
    "ACVPU_ANSWERS",
    "ACVPU_CODE",
    "BP_PANELS",
    "CONDITION_COLUMNS",
    "CONDITION_LABELS",
    "UNIT_CONVERSIONS",
    "VITAL_CODES",
    "FhirData",
    "FhirReport",
    "condition_label",
    "read_fhir",
    "read_fhir_bytes",
    "read_fhir_files",
]
