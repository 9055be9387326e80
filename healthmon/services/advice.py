"""Advice drafts and the clinician's decision on each, stored with the patient and audited.

Fired rules become drafts (:func:`draft_advice`); a clinician approves one as written,
approves it with their own wording ("edited") or dismisses it with a reason
(:func:`decide_advice`). Only approved and edited advice reaches the case report. Every
draft and decision is an audit entry with the before and after, and a decision made on a
stale view of a draft (someone else decided meanwhile) is refused, not overwritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import EllipsisType

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from healthmon.advice.engine import Advice, AdviceResult, evaluate
from healthmon.advice.rules import AdviceError, Rule
from healthmon.advice.snapshot import SCALE_2_MARK, PatientSnapshot
from healthmon.services.accounts import SignedIn, require_in
from healthmon.services.patients import patient_snapshot
from healthmon.storage.db import insert_or_skip, transaction, unit_of_work
from healthmon.storage.models import ADVICE_STATUSES, AdviceItem, Patient, User, utcnow
from healthmon.storage.repository import audit
from healthmon.types import AdviceView, as_utc

DECISIONS = ("approved", "edited", "dismissed")
SEXES = ("female", "male")


def _view(item: AdviceItem, patient: str, users: dict[int, str]) -> AdviceView:
    return AdviceView(item.id, patient, item.rule_id, item.title, item.source, item.kind, item.urgency,
                      item.follow_up_days, tuple(item.triggers or ()), item.draft_text, item.final_text, item.status,
                      users.get(item.decided_by) if item.decided_by else None, as_utc(item.decided_at),
                      item.decision_note, item.version, item.note_id, item.created_by, as_utc(item.created_at))


def _decider(session: Session, user: SignedIn | str) -> User:
    """The person deciding: a signed-in clinician or admin, or (CLI) the name of an active one."""
    if isinstance(user, str):
        person = session.scalar(select(User).where(User.name == user, User.active.is_(True)))
        if person is None or person.role not in ("clinician", "admin"):
            raise AdviceError("the name of an active clinician or admin", repr(user),
                              "pass --as with such a user (see `healthmon users list`)")
        return person
    return session.get(User, require_in(session, user, "advice.decide").user_id)


def _case_of(snapshot: PatientSnapshot, triggers: list[dict]) -> tuple[int | None, int | None]:
    """The case and model version behind a risk trigger ("case #12, model demo-3"), if any."""
    for trigger in triggers:
        if trigger["fact"].startswith("risk."):
            label = trigger["fact"].removeprefix("risk.")
            for case in snapshot.cases:
                if case.probabilities.get(label) == snapshot.findings.risk.get(label):
                    return case.note_id, case.version_id
    return None, None


def _should_draft(rule: Rule, key: str, earlier: list[AdviceItem], now: datetime) -> bool:
    """Whether a fired rule becomes a new draft, given the patient's earlier items of that rule.

    Not when the same finding already waits as a draft; not within the rule's follow-up
    interval after a clinician approved it (the follow-up is already planned); not when a
    clinician already decided on exactly this finding, until its interval has passed (so an
    age-based screening comes back when it is due again, and a same-day rule never repeats
    a decided finding).
    """
    if any(i.status == "draft" and i.finding_key == key for i in earlier):
        return False
    window = timedelta(days=rule.follow_up_days)
    decided = [(i, as_utc(i.decided_at)) for i in earlier if i.status in DECISIONS and i.decided_at is not None]
    if rule.follow_up_days and any(i.status in ("approved", "edited") and at >= now - window for i, at in decided):
        return False
    same = [at for i, at in decided if i.finding_key == key]
    return not same or (rule.follow_up_days > 0 and max(same) < now - window)


def _items_by_rule(session: Session, patient_id: str) -> dict[str, list[AdviceItem]]:
    """A patient's advice items (every status), grouped by rule id."""
    by_rule: dict[str, list[AdviceItem]] = {}
    for item in session.scalars(select(AdviceItem).join(Patient, Patient.id == AdviceItem.patient_id)
                                .where(Patient.external_id == patient_id)):
        by_rule.setdefault(item.rule_id, []).append(item)
    return by_rule


def _draftable(result: AdviceResult, by_rule: dict[str, list[AdviceItem]], now: datetime) -> list[Advice]:
    # Rule ids are unique, so each rule fires at most once in a result: one pass decides them all.
    return [a for a in result.advice if _should_draft(a.rule, a.fingerprint, by_rule.get(a.rule.id, []), now)]


def undrafted(factory: sessionmaker[Session], patient_id: str, result: AdviceResult) -> list[Advice]:
    """The fired advice that :func:`draft_advice` would store now (nothing is written)."""
    with transaction(factory) as s:
        return _draftable(result, _items_by_rule(s, patient_id), utcnow())


def news2_off_record(to_draft: list[Advice], view_scale: int, on_record: int) -> bool:
    """Whether drafting ``to_draft`` would store advice resting on a NEWS2 scored on another SpO2
    scale than the one on record, which :func:`draft_advice` refuses (and the Patient page does
    not offer). A NEWS2 draft scored off the record would contradict it, and recording that scale
    later would set it aside again. Advice that does not rest on NEWS2 (a blood-pressure crisis,
    a screening) does not depend on the scale."""
    return view_scale != on_record and any(rests_on_news2(a) for a in to_draft)


def draft_advice(factory: sessionmaker[Session], user: SignedIn | str, snapshot: PatientSnapshot,
                 result: AdviceResult) -> list[AdviceView]:
    """Store a draft for each fired rule that needs one (see :func:`_should_draft`).

    A newer draft of a rule replaces the older pending one, which is kept as ``superseded``
    (audited), so a clinician decides on the current values only. NEWS2 must be scored on the
    SpO2 scale on record (scale 1 where none is), not one chosen for a single view. A clinician (or an admin)
    drafts; the CLI passes the name of one. Two sessions drafting at once store each draft
    once. Returns the patient's advice items, newest first (see :func:`patient_advice`).
    """
    now = utcnow()
    with transaction(factory) as s:
        actor = _decider(s, user).name
        patient = s.scalar(select(Patient).where(Patient.external_id == snapshot.patient_id))
        if patient is None:
            raise AdviceError("a stored patient", f"no patient {snapshot.patient_id!r}", "store the patient's data first")
        by_rule = _items_by_rule(s, snapshot.patient_id)
        to_draft = _draftable(result, by_rule, now)
        on_record = patient.spo2_scale or 1
        if snapshot.vitals is not None and news2_off_record(to_draft, snapshot.vitals.spo2_scale, on_record):
            raise AdviceError(f"advice resting on NEWS2 drafted on the SpO2 scale on record (scale {on_record})",
                              f"NEWS2 scored on scale {snapshot.vitals.spo2_scale}, not the scale on record",
                              f"record scale {snapshot.vitals.spo2_scale} for the patient first (with its reason), "
                              f"or draft on scale {on_record}")
        for advice in to_draft:
            rule, key = advice.rule, advice.fingerprint
            earlier = by_rule.setdefault(rule.id, [])
            rounds = sum(i.finding_key == key for i in earlier)
            fingerprint = key if rounds == 0 else hashlib.sha256(f"{key}:{rounds}".encode()).hexdigest()
            triggers = advice.trigger_dicts()
            note_id, version_id = _case_of(snapshot, triggers)
            values = dict(patient_id=patient.id, note_id=note_id, model_version_id=version_id, rule_id=rule.id,
                          finding_key=key, fingerprint=fingerprint, title=rule.title, source=rule.source,
                          kind=rule.kind, urgency=rule.urgency, follow_up_days=rule.follow_up_days, triggers=triggers,
                          draft_text=rule.advice, status="draft", decision_note="", version=0, created_by=actor,
                          created_at=now)
            # Another session may have drafted the same finding a moment ago: its row stands.
            new_id = s.scalar(insert_or_skip(s, AdviceItem, ["patient_id", "fingerprint"]).values(**values)
                              .returning(AdviceItem.id))
            if new_id is None:
                continue
            item = s.get(AdviceItem, new_id)
            for old in earlier:
                if old.status == "draft":
                    _set_aside(s, actor, old, {"by": item.id})
            earlier.append(item)
            audit(s, actor, "advice.draft", "advice", item.id, None,
                  {"patient": snapshot.patient_id, "rule": rule.id, "triggers": [t["text"] for t in triggers]})
    return patient_advice(factory, snapshot.patient_id)


def patient_advice(factory: sessionmaker[Session], patient_id: str, *, statuses: tuple[str, ...] = ADVICE_STATUSES
                   ) -> list[AdviceView]:
    """A patient's advice items with the given statuses, newest first."""
    with transaction(factory) as s:
        rows = s.scalars(select(AdviceItem).join(Patient, Patient.id == AdviceItem.patient_id)
                         .where(Patient.external_id == patient_id, AdviceItem.status.in_(statuses))
                         .order_by(AdviceItem.id.desc())).all()
        users = dict(s.execute(select(User.id, User.name).where(User.id.in_({r.decided_by for r in rows if r.decided_by}))).all())
        return [_view(row, patient_id, users) for row in rows]


def decide_advice(factory: sessionmaker[Session], user: SignedIn | str, advice_id: int, decision: str, *,
                  seen_version: int, text: str | None = None, note: str = "") -> AdviceView:
    """A clinician's decision on one advice item.

    Args:
        decision: ``approved`` (as drafted), ``edited`` (approved with ``text``) or ``dismissed``
            (``note`` says why: required, so a dismissed escalation is never unexplained).
        seen_version: the item's ``version`` the clinician was looking at; if someone decided
            since, the decision is refused rather than silently replacing theirs.
        user: a signed-in clinician or admin, or (CLI) the name of an active one.

    Raises:
        AdviceError: unknown item or decision, empty edit, missing dismissal reason, stale version.
        PermissionDenied: the role may not decide on advice.
    """
    if decision not in DECISIONS:
        raise AdviceError(f"a decision among {', '.join(DECISIONS)}", repr(decision), "approve, edit or dismiss")
    if decision == "edited" and not (text or "").strip():
        raise AdviceError("the edited advice text", "an empty text", "write the advice, or dismiss the draft")
    if decision == "dismissed" and not note.strip():
        raise AdviceError("a reason for dismissing the advice", "none", "say why it does not apply to this patient")
    with transaction(factory) as s:
        person = _decider(s, user)
        item = s.get(AdviceItem, advice_id)
        if item is None:
            raise AdviceError("a stored advice item", f"no advice #{advice_id}", "pick one from the patient's list")
        if item.version != seen_version or item.status != "draft":
            decided = f" by {s.get(User, item.decided_by).name}" if item.decided_by else ""
            raise AdviceError(f"a draft of advice #{advice_id} as you saw it (version {seen_version})",
                              f"version {item.version}: it was {item.status}{decided} meanwhile" if item.version != seen_version
                              else f"it is already {item.status}{decided}",
                              "reload the patient and decide on the current draft")
        before = {"status": item.status, "text": item.draft_text, "version": item.version}
        # Compare-and-swap: only one decision can move the draft from this version, on SQLite
        # (where SELECT ... FOR UPDATE does nothing) as on PostgreSQL.
        changed = s.execute(
            update(AdviceItem).where(AdviceItem.id == advice_id, AdviceItem.version == seen_version,
                                     AdviceItem.status == "draft")
            .values(status=decision, final_text=text.strip() if decision == "edited" else None,
                    decision_note=note.strip(), decided_by=person.id, decided_at=utcnow(),
                    version=AdviceItem.version + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed != 1:
            raise AdviceError(f"a draft of advice #{advice_id} as you saw it (version {seen_version})",
                              "another decision was stored a moment ago", "reload the patient and decide again")
        s.expire(item)
        patient = s.get(Patient, item.patient_id).external_id
        audit(s, person.name, f"advice.{decision}", "advice", item.id, before,
              {"status": item.status, "text": item.final_text or item.draft_text, "note": item.decision_note,
               "patient": patient, "rule": item.rule_id})
        return _view(item, patient, {person.id: person.name})


def set_demographics(factory: sessionmaker[Session], user: SignedIn | str, patient_id: str, *,
                     birth_date: date | None | EllipsisType = ..., sex: str | None | EllipsisType = ...) -> None:
    """Record a patient's birth date and/or sex (the age- and sex-based screening rules read
    them); a field left as ``...`` keeps its stored value. Clinicians and admins only; audited."""
    if sex is not ... and sex is not None and sex not in SEXES:
        raise AdviceError(f"sex one of {', '.join(SEXES)} (or unknown)", repr(sex), "choose one, or leave it unknown")
    if birth_date is not ... and birth_date is not None and not date(1890, 1, 1) <= birth_date <= date.today():
        raise AdviceError("a birth date between 1890 and today", str(birth_date), "correct the date")
    with transaction(factory) as s:
        actor = _decider(s, user).name
        patient = s.scalar(select(Patient).where(Patient.external_id == patient_id))
        if patient is None:
            raise AdviceError("a stored patient", f"no patient {patient_id!r}", "store the patient's data first")
        before = {"birth_date": str(patient.birth_date) if patient.birth_date else None, "sex": patient.sex}
        if birth_date is not ...:
            patient.birth_date = birth_date
        if sex is not ...:
            patient.sex = sex
        audit(s, actor, "patient.demographics", "patient", patient.id, before,
              {"birth_date": str(patient.birth_date) if patient.birth_date else None, "sex": patient.sex})


SPO2_REASON_MAX = 500


def trigger_spo2_scale(trigger: dict) -> int | None:
    """The SpO2 scale a stored NEWS2 trigger was scored on (its detail names scale 2; scale 1
    triggers kept their original text), or None for a trigger that does not rest on NEWS2. A
    NEWS2 alert (the home rule's ``alert contains news2_high``) rests on NEWS2 too."""
    fact = str(trigger.get("fact", ""))
    if not (fact.startswith("news2.") or (fact == "alert" and str(trigger.get("threshold", "")).startswith("news2"))):
        return None
    return 2 if SCALE_2_MARK in str(trigger.get("detail", "")) else 1


def rests_on_news2(advice: Advice) -> bool:
    """Whether a fired advice's triggers include a NEWS2 score (so it depends on the SpO2 scale)."""
    return any(trigger_spo2_scale(t) is not None for t in advice.trigger_dicts())


def _set_aside(session: Session, actor: str, item: AdviceItem, after: dict, note: str = "") -> bool:
    """Move a pending draft to ``superseded`` (audited), unless someone decided on it since it
    was read: compare-and-swap on its version, so a concurrent approval on PostgreSQL is never
    overwritten. Returns whether it moved."""
    values = {"status": "superseded", "version": AdviceItem.version + 1}
    if note:
        values["decision_note"] = note
    moved = session.execute(
        update(AdviceItem).where(AdviceItem.id == item.id, AdviceItem.version == item.version,
                                 AdviceItem.status == "draft")
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount == 1
    session.expire(item)
    if moved:
        audit(session, actor, "advice.superseded", "advice", item.id, {"status": "draft"},
              {"status": "superseded", **after})
    return moved


def set_spo2_scale(factory: sessionmaker[Session], user: SignedIn | str, patient_id: str, scale: int, *,
                   reason: str = "") -> list[int]:
    """Record the NEWS2 SpO2 scale a patient is scored on from now on, everywhere: 2 for a
    prescribed 88-92 % target, 1 to withdraw it. RCP 2017 reserves scale 2 for a target set by a
    competent clinical decision-maker (confirmed hypercapnic respiratory failure) and asks for
    it to be documented, so scale 2 needs a reason. Clinicians and admins only; audited, with
    the scale it replaced.

    Pending drafts fired by a NEWS2 scored on the other scale are set aside (``superseded``,
    audited, the reason in their decision note): their score is wrong for this patient, and a
    draft that the right scale no longer fires would otherwise wait to be approved. Decided
    advice is history and stays as it is. Returns the ids of the drafts set aside.
    """
    if scale not in (1, 2):
        raise AdviceError("SpO2 scale 1 or 2", repr(scale), "use scale 2 only for a prescribed 88-92 % target, else 1")
    reason = (reason or "").strip()
    if scale == 2 and not reason:
        raise AdviceError("the reason for a prescribed 88-92 % target (e.g. hypercapnic respiratory failure on "
                          "blood gas)", "no reason", "say why scale 2 applies; it is shown beside every score")
    if len(reason) > SPO2_REASON_MAX:
        raise AdviceError(f"a reason of at most {SPO2_REASON_MAX} characters", f"{len(reason)} characters",
                          "shorten it; the full history belongs in the notes")
    with transaction(factory) as s:
        actor = _decider(s, user).name
        patient = s.scalar(select(Patient).where(Patient.external_id == patient_id))
        if patient is None:
            raise AdviceError("a stored patient", f"no patient {patient_id!r}", "store the patient's data first")
        before = {"spo2_scale": patient.spo2_scale, "reason": patient.spo2_scale_reason,
                  "set_by": patient.spo2_scale_set_by}
        patient.spo2_scale, patient.spo2_scale_reason = scale, reason
        patient.spo2_scale_set_by, patient.spo2_scale_set_at = actor, utcnow()
        audit(s, actor, "patient.spo2_scale", "patient", patient.id, before,
              {"spo2_scale": scale, "reason": reason, "patient": patient_id})
        set_aside = []
        for item in s.scalars(select(AdviceItem).where(AdviceItem.patient_id == patient.id,
                                                       AdviceItem.status == "draft")).all():
            scored_on = {trigger_spo2_scale(t) for t in item.triggers or ()} - {None}
            if scored_on and scored_on != {scale}:
                note = (f"set aside: fired by a NEWS2 scored on SpO2 scale {min(scored_on - {scale})}; "
                        f"scale {scale} recorded by {actor}")
                if _set_aside(s, actor, item, {"reason": note}, note):
                    set_aside.append(item.id)
        return set_aside


@dataclass(frozen=True)
class AdviceCommand:
    """What one headless advice command records and decides, applied whole or not at all."""

    patient_id: str
    actor: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    record_spo2_scale: int | None = None
    reason: str = ""
    draft: bool = False
    decisions: tuple[tuple[int, str, str | None, str], ...] = ()  # (advice id, decision, text, note)
    setting: str | None = None
    spo2_scale: int | None = None


def apply_advice_command(factory: sessionmaker[Session], command: AdviceCommand, rules: tuple[Rule, ...]
                         ) -> tuple[PatientSnapshot, AdviceResult, list[int]]:
    """Record demographics and a scale, draft fired advice and take decisions in one transaction.

    A draft refused (NEWS2 scored off the record), a scale without its reason or a decision on
    an id that is not pending rolls back everything the command stored before it, so no
    half-applied command is left. Returns the snapshot, the fired advice and the ids of
    pending drafts the scale change set aside.
    """
    set_aside: list[int] = []
    with unit_of_work(factory):
        if command.birth_date or command.sex:
            set_demographics(factory, command.actor, command.patient_id, birth_date=command.birth_date,
                             sex=command.sex)
        if command.record_spo2_scale:
            set_aside = set_spo2_scale(factory, command.actor, command.patient_id, command.record_spo2_scale,
                                       reason=command.reason)
        snapshot = patient_snapshot(factory, command.patient_id, setting=command.setting,
                                    spo2_scale=command.spo2_scale)
        result = evaluate(rules, snapshot.findings)
        if command.draft:
            draft_advice(factory, command.actor, snapshot, result)
        current = {item.id: item.version for item in patient_advice(factory, command.patient_id)}
        for advice_id, decision, text, note in command.decisions:
            if advice_id in set_aside:  # its status alone ("superseded") would not say that this command did it
                raise AdviceError("a pending draft to approve, edit or dismiss",
                                  f"advice {advice_id}, set aside by --record-spo2-scale {command.record_spo2_scale} in "
                                  "this same command (it was fired by a NEWS2 on the other SpO2 scale)",
                                  "record the scale with --draft first, then decide on the new draft")
            if advice_id not in current:
                raise AdviceError(f"an advice id of patient {command.patient_id} "
                                  f"({', '.join(map(str, current)) or 'none stored'})",
                                  str(advice_id), "run `healthmon advice --patient ID` to list them")
            decide_advice(factory, command.actor, advice_id, decision, seen_version=current[advice_id], text=text,
                          note=note)
    return snapshot, result, set_aside
