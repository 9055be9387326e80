"""Trends and anomalies: sustained shifts and sudden jumps against each patient's own baseline."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from healthmon.errors import ConfigError
from healthmon.ingest.vitals_csv import read_vitals_csv
from healthmon.vitals.alert_rules import (
    JUMP_RULES,
    SHIFT_RULES,
    SPREAD_FLOORS,
    JumpRule,
    ShiftRule,
)
from healthmon.vitals.alerts import Alert, alerts_frame
from healthmon.vitals.news2_alerts import news2_alerts
from healthmon.vitals.parameters import COLUMNS
from healthmon.vitals.series import news2_over_time
from healthmon.vitals.trends import (
    detect_alerts,
    rolling_baseline,
)

START = pd.Timestamp("2026-01-01 08:00", tz="UTC")
SHIFTS = {rule.rule_id: rule for rule in SHIFT_RULES}
JUMPS = {rule.rule_id: rule for rule in JUMP_RULES}
# A typical own baseline per parameter, for rules that need one.
TYPICAL = {"heart_rate": 60.0, "steps": 10_000.0, "sleep_minutes": 420.0, "spo2": 97.0, "weight": 80.0,
           "systolic_bp": 125.0, "temperature": 36.8, "respiration_rate": 15.0}


def readings(values, parameter="heart_rate", patient="p1", *, start=START, every="1D", artefact=None) -> pd.DataFrame:
    """A long vitals table: ``values`` at a fixed interval from ``start``."""
    times = pd.date_range(start, periods=len(values), freq=every)
    return pd.DataFrame({"patient_id": patient, "time": times, "parameter": parameter,
                         "value": [float(v) for v in values],
                         "artefact": artefact if artefact is not None else [False] * len(values),
                         "source": "test"})[COLUMNS]


def shifted_value(rule: ShiftRule, baseline: float, fraction_of_threshold: float) -> float:
    amount = (baseline * rule.change if rule.relative else rule.change) * fraction_of_threshold
    return baseline + amount if rule.direction == "up" else baseline - amount


def as_pairs(frame: pd.DataFrame) -> set[tuple[pd.Timestamp, float]]:
    return set(zip(frame["time"], frame["value"].astype(float)))


@pytest.mark.parametrize("rule_id", sorted(SHIFTS))
def test_each_shift_rule_fires_at_its_threshold_and_not_just_below(rule_id):
    rule = SHIFTS[rule_id]
    base = TYPICAL[rule.parameter]
    for fraction, fires in ((1.0, True), (0.99, False)):
        frame = readings([base] * rule.baseline_days + [shifted_value(rule, base, fraction)] * rule.recent_days,
                         rule.parameter)
        report = detect_alerts(frame, rules=(rule,))
        assert not report.skipped  # enough history: checked, whatever the outcome
        if not fires:
            assert report.alerts == (), fraction
            continue
        # One alert for the whole run of firing days, on its first day: when over half the recent window moved.
        (alert,) = report.alerts
        assert (alert.kind, alert.direction, alert.rule_id, alert.threshold) == ("sustained_shift", rule.direction,
                                                                                 rule_id, rule.change)
        assert alert.baseline == pytest.approx(base) and alert.current == pytest.approx(shifted_value(rule, base, 1))
        day = alert.time.floor("D")
        window = frame[(frame.time.dt.floor("D") > day - pd.Timedelta(days=rule.recent_days))
                       & (frame.time.dt.floor("D") <= day)]
        assert set(alert.readings) == as_pairs(window) and len(alert.readings) == len(window)
        assert alert.time == window.time.max() and alert.time == alert.readings[-1][0]
        assert str(rule.baseline_days) in alert.message and rule.label in alert.message


def test_the_resting_heart_rate_message_reads_like_the_chart():
    frame = readings([67] * 28 + [78] * 7)
    (alert,) = detect_alerts(frame, rules=(SHIFTS["hr_resting_up"],)).alerts
    assert alert.message == ("Resting heart rate 7-day median 78 /min is 11 /min above the 28-day baseline of "
                             "67 /min (readings 2026-01-26..2026-02-01).")
    assert (alert.change, alert.unit, alert.severity) == (11, "/min", "low")
    twice = readings([60] * 28 + [80] * 7)
    assert detect_alerts(twice, rules=(SHIFTS["hr_resting_up"],)).alerts[0].severity == "medium"  # 2x threshold


def test_with_an_even_number_of_recent_days_a_majority_must_have_moved():
    def week_with_gaps(baseline, recent, parameter="heart_rate"):
        # 28 days of baseline, then readings on only 4 days of the 7-day window (days 28, 30, 32, 34).
        days = [readings([v], parameter, start=START + pd.Timedelta(days=28 + 2 * i)) for i, v in enumerate(recent)]
        return pd.concat([readings([baseline] * 28, parameter), *days], ignore_index=True)

    rule = SHIFTS["hr_resting_up"]
    # 2 raised days of 4 is not a shift (averaging the middle two would make it 70, exactly 10 up); 3 of 4 is.
    assert detect_alerts(week_with_gaps(60, [80, 60, 80, 60]), rules=(rule,)).alerts == ()
    (alert,) = detect_alerts(week_with_gaps(60, [80, 80, 60, 80]), rules=(rule,)).alerts
    assert alert.current == 80 and alert.message.startswith(
        "Resting heart rate 7-day median (4 days with readings) 80 /min is 20 /min above")
    # Falling steps: the middle day nearer the baseline is the higher one, so 2 low days of 4 do not fire.
    steps = SHIFTS["steps_down"]
    assert detect_alerts(week_with_gaps(10_000, [2_000, 10_000, 2_000, 10_000], "steps"), rules=(steps,)).alerts == ()
    assert len(detect_alerts(week_with_gaps(10_000, [2_000, 10_000, 2_000, 2_000], "steps"), rules=(steps,)).alerts) == 1


def test_resting_heart_rate_is_the_days_10th_percentile_reading_and_the_alert_points_at_it():
    # Eleven readings a day: one low glitch (40), then 60..69 (or 70..79 in the last week).
    rows = []
    for day in range(35):
        level = 60 if day < 28 else 70
        values = [40] + [level + i for i in range(10)]
        rows.append(readings(values, start=START + pd.Timedelta(days=day), every="1h"))
    frame = pd.concat(rows, ignore_index=True)
    (alert,) = detect_alerts(frame, rules=(SHIFTS["hr_resting_up"],)).alerts
    # The 10th percentile of 11 readings is the second lowest: the glitch is ignored, one reading per day named.
    assert alert.baseline == 60 and alert.current == 70
    assert len(alert.readings) == 7 and {v for _, v in alert.readings} == {60.0, 70.0}
    assert set(alert.readings) <= as_pairs(frame)
    assert all(t.hour == 9 for t, _ in alert.readings)  # the 09:00 reading is each day's second lowest


def test_weight_gain_compares_with_the_lowest_weight_of_the_three_days_before():
    rule = SHIFTS["weight_gain_3d"]
    frame = readings([80.5, 80.0, 81.0, 81.5, 82.0], "weight")  # 2.0 kg above the 80.0 two days earlier
    (alert,) = detect_alerts(frame, rules=(rule,)).alerts
    assert alert.readings == ((frame.time.iloc[-1], 82.0),) and alert.baseline == 80.0
    assert alert.message == ("Weight 82 kg is 2 kg above the lowest of the previous 3 days of 80 kg "
                             "(reading 2026-01-05).")
    assert alert.severity == "medium"
    slow = readings([80.0, 80.5, 81.0, 81.5, 82.0, 82.5], "weight")  # 0.5 kg a day: 1.5 kg in any 3 days
    assert detect_alerts(slow, rules=(rule,)).alerts == ()


def test_zero_step_days_count_as_not_worn():
    rule = SHIFTS["steps_down"]
    frame = readings([10_000] * 28 + [0, 0, 0, 0, 10_000, 10_000, 10_000], "steps")
    report = detect_alerts(frame, rules=(rule,))
    assert report.alerts == ()
    assert report.skipped == ("steps for p1: 3 day(s) of data in the 7 day(s) to 2026-02-04, the check needs 4 (steps_down)",)


@pytest.mark.parametrize("rule_id", sorted(JUMPS))
@pytest.mark.parametrize("sign", [1, -1])
def test_each_jump_rule_fires_at_its_clinical_amount_and_not_just_below(rule_id, sign):
    rule = JUMPS[rule_id]
    base = TYPICAL[rule.parameter]
    for fraction, fires in ((1.0, True), (0.99, False)):
        value = base + sign * rule.min_change * fraction
        frame = readings([base] * 10 + [value] + [base] * 3, rule.parameter, every="4h")
        alerts = detect_alerts(frame, rules=(rule,)).alerts
        if not fires:
            assert alerts == ()
            continue
        (alert,) = alerts
        assert alert.readings == ((frame.time.iloc[10], value),) and alert.time == frame.time.iloc[10]
        assert (alert.kind, alert.direction, alert.baseline) == ("sudden_jump", "up" if sign > 0 else "down", base)
        assert alert.change == pytest.approx(sign * rule.min_change)


def test_a_jump_must_also_be_unusual_for_a_noisy_patient():
    # Alternating 60/80: median 70, MAD 10, robust SD 14.8; 3.5 SDs is 51.9 /min, more than the 25 /min amount.
    history = [60, 80] * 5
    fires = detect_alerts(readings(history + [122], every="1h"), rules=(JUMPS["hr_jump"],)).alerts
    quiet = detect_alerts(readings(history + [121.8], every="1h"), rules=(JUMPS["hr_jump"],)).alerts
    assert len(fires) == 1 and fires[0].current == 122 and quiet == ()
    assert "3.5 robust SDs" in fires[0].message or "more than 3.5" in fires[0].message


def test_a_sudden_jump_names_the_reading_and_a_held_jump_is_one_alert():
    values = [72, 70, 71, 69, 70, 73, 70, 68, 71, 70, 115, 117, 116, 71, 70]
    frame = readings(values, every="15min")
    (alert,) = detect_alerts(frame, rules=(JUMPS["hr_jump"],)).alerts
    assert alert.time == frame.time.iloc[10] and alert.current == 115 and alert.baseline == 70
    assert alert.readings == tuple(zip(frame.time.iloc[10:13], [115.0, 117.0, 116.0]))
    assert alert.severity == "medium" and "; 3 consecutive readings to 2026-01-01 11:00 UTC." in alert.message
    assert alert.message.startswith("Heart rate 115 /min at 2026-01-01 10:30 UTC is 45 /min above the median of the "
                                    "previous readings, 70 /min (15.0 robust SDs; the rule needs 25 /min")
    values[12] = 121  # 51 /min above: twice the rule's amount somewhere in the episode makes it high
    assert detect_alerts(readings(values, every="15min"), rules=(JUMPS["hr_jump"],)).alerts[0].severity == "high"


def test_the_earlier_readings_median_is_the_up_to_ten_readings_before_within_the_look_back():
    """All readings' medians are computed at once; checked here against the rule read literally,
    one reading at a time, on irregular times with gaps longer than the 14-day look-back."""
    import random

    import numpy as np

    from healthmon.vitals.alert_rules import MAD_TO_SD
    from healthmon.vitals.jumps import _earlier_medians

    rule = JUMPS["hr_jump"]
    chooser = random.Random(7)
    gaps = [chooser.choice(["0s", "1min", "1h", "3D", "20D"]) for _ in range(300)]
    times = pd.Series(START + pd.to_timedelta(pd.Series(gaps)).cumsum())
    values = np.array([round(chooser.gauss(70, 8), 1) for _ in gaps])
    medians, spreads, enough = _earlier_medians(times, values, rule)
    lookback = pd.Timedelta(rule.lookback)
    for index, time in enumerate(times):
        earlier = [values[j] for j in range(max(0, index - rule.history), index) if times[j] >= time - lookback]
        assert enough[index] == (len(earlier) >= rule.min_history)
        if enough[index]:
            assert medians[index] == np.median(earlier)
            assert spreads[index] == pytest.approx(MAD_TO_SD * np.median(np.abs(np.asarray(earlier) - medians[index])))
    assert 0 < enough.sum() < len(gaps)  # both kinds occur: the 20-day gaps leave readings unchecked


def test_artefacts_are_neither_baseline_nor_trigger():
    values = [70.0] * 12
    values[8] = 300.0
    flags = [False] * 12
    flags[8] = True
    frame = readings(values, every="1h", artefact=flags)
    assert detect_alerts(frame).alerts == ()
    flagged_unflagged = readings(values, every="1h")  # the same 300 /min, trusted, would fire
    assert [a.rule_id for a in detect_alerts(flagged_unflagged).alerts] == ["hr_jump"]
    # Artefacts in the baseline days do not move it: 28 days at 60 plus daily artefacts of 250.
    days = readings([60] * 28 + [69] * 7)
    junk = readings([250] * 35, artefact=[True] * 35)
    assert detect_alerts(pd.concat([days, junk]), rules=(SHIFTS["hr_resting_up"],)).alerts == ()
    only_junk = detect_alerts(junk, rules=(SHIFTS["hr_resting_up"],))
    assert only_junk.alerts == () and only_junk.skipped == (
        "heart_rate for p1: no usable readings (35 artefact(s) left out) (hr_resting_up)",)


def test_too_little_history_is_skipped_with_the_reason_and_no_alert():
    report = detect_alerts(readings([60, 95, 130]))
    assert report.alerts == ()
    baseline_reason = ("heart_rate for p1: 3 day(s) of data up to 2026-01-03; the 28-day baseline before the last "
                       "7 day(s) has 0, the baseline needs 14 (hr_resting_up)")
    jump_reason = ("heart_rate for p1: 3 reading(s) up to 2026-01-03, a sudden-jump check needs 5 earlier ones "
                   "within 14D (hr_jump)")
    assert report.skipped == (baseline_reason, jump_reason)


def test_readings_after_now_are_ignored():
    frame = readings([60] * 28 + [75] * 7)
    assert len(detect_alerts(frame).alerts) == 1
    before = detect_alerts(frame, now=frame.time.iloc[28])
    assert before.alerts == () and before.now == frame.time.iloc[28]
    assert detect_alerts(frame.iloc[:0]).now is None


def test_one_patients_readings_never_touch_another_patients_baseline():
    calm = readings([60] * 28 + [75] * 7, patient="p1")
    wild = readings([150, 40] * 17 + [150], patient="p2")  # same times, very different values
    alone = detect_alerts(calm)
    assert [a.rule_id for a in alone.alerts] == ["hr_resting_up"]  # so the comparisons below compare something
    both = detect_alerts(pd.concat([wild, calm], ignore_index=True))
    assert [a for a in both.alerts if a.patient_id == "p1"] == list(alone.alerts)
    assert all(t in set(calm.time) for a in alone.alerts for t, _ in a.readings)
    band_alone = rolling_baseline(calm, "heart_rate")
    band_both = rolling_baseline(pd.concat([wild, calm]), "heart_rate")
    pd.testing.assert_frame_equal(band_both[band_both.patient_id == "p1"].reset_index(drop=True), band_alone)


def test_rolling_baseline_is_the_patients_usual_range_without_the_reading_itself():
    values = [70.0] * 10 + [130.0] + [70.0] * 3
    flags = [False] * 14
    flags[12] = True
    frame = readings(values, every="1h", artefact=flags)
    band = rolling_baseline(frame, "heart_rate", window="6h")
    assert list(band.columns) == ["patient_id", "time", "value", "baseline", "low", "high", "n"]
    assert len(band) == 13 and frame.time.iloc[12] not in set(band.time)  # the artefact is not drawn or used
    assert band.baseline.iloc[:3].isna().all() and band.n.iloc[:4].tolist() == [0, 1, 2, 3]
    spike = band.iloc[10]
    floor = SPREAD_FLOORS["heart_rate"]
    assert (spike.value, spike.baseline, spike.low, spike.high) == (130, 70, 70 - 3 * floor, 70 + 3 * floor)
    after = band.iloc[11]
    assert after.baseline == 70 and after.n == 6 and after.high == 70 + 3 * floor  # one spike moves neither
    assert rolling_baseline(frame, "spo2").empty


def test_news2_rows_with_a_red_flag_or_a_medium_or_high_band_become_alerts():
    csv = """time,patient,rr,spo2,o2,sbp,hr,avpu,temp
2026-03-01 08:00,w1,16,97,air,120,70,A,37.0
2026-03-01 12:00,w1,8,97,air,120,70,A,37.0
2026-03-01 16:00,w1,22,95,air,120,105,A,38.5
2026-03-01 20:00,w1,25,91,air,120,120,A,37.0
"""
    scores = news2_over_time(read_vitals_csv(csv.encode(), "ward.csv").frame, lookback="1h")
    assert scores.total.tolist() == [0, 3, 5, 8] and scores.band.tolist() == ["low", "low-medium", "medium", "high"]
    alerts = news2_alerts(scores)
    assert [(a.rule_id, a.severity, a.current) for a in alerts] == [
        ("news2_red_flag", "medium", 3), ("news2_medium", "medium", 5), ("news2_high", "high", 8)]
    red, _, high = alerts
    assert all(isinstance(a, Alert) and a.kind == "news2" and a.parameter == "news2" for a in alerts)
    assert red.readings == ((scores.time.iloc[1], 3.0),) and red.time == scores.time.iloc[1]
    # Each message names the readings behind the points.
    assert red.message == "NEWS2 3 (low-medium band) at 2026-03-01 12:00 UTC: respiration rate 8 /min: 3 (red flag)."
    assert high.message == ("NEWS2 8 (high band) at 2026-03-01 20:00 UTC: respiration rate 25 /min: 3 (red flag), "
                            "SpO2 91 %: 3 (red flag), heart rate 120 /min: 2.")
    assert news2_alerts(scores.iloc[:1]) == () and news2_alerts(scores.iloc[:0]) == ()


def test_consecutive_news2_scores_under_one_rule_are_one_episode_per_patient():
    rows = [("w1", "08:00", 25, 120), ("w1", "09:00", 26, 135), ("w1", "10:00", 16, 70), ("w1", "11:00", 25, 118),
            ("w2", "08:30", 25, 121)]
    csv = "time,patient,rr,spo2,o2,sbp,hr,avpu,temp\n" + "".join(
        f"2026-03-01 {t},{p},{rr},91,air,120,{hr},A,37.0\n" for p, t, rr, hr in rows)
    scores = news2_over_time(read_vitals_csv(csv.encode(), "ward.csv").frame, lookback="30min")
    alerts = news2_alerts(scores)
    # w1: a high episode of two scores, a quiet hour (SpO2 91 alone is a red flag, so one
    # red-flag alert), then high again: three alerts; w2's own score is its own alert.
    assert [(a.patient_id, a.rule_id, len(a.readings)) for a in alerts] == [
        ("w1", "news2_high", 2), ("w2", "news2_high", 1), ("w1", "news2_red_flag", 1), ("w1", "news2_high", 1)]
    first = alerts[0]
    assert first.current == max(total for _, total in first.readings) and first.time == first.readings[0][0]
    assert "2 consecutive scores in this range from 2026-03-01 08:00 UTC to 2026-03-01 09:00 UTC" in first.message
    assert first.message.startswith("NEWS2 9 (high band) at 2026-03-01 09:00 UTC")  # the peak score
    assert "heart rate 135 /min: 3 (red flag)" in first.message  # and its readings


def test_alerts_frame_has_one_row_per_alert_with_the_marker_value():
    frame = readings([70.0] * 10 + [118.0, 70.0], every="1h")
    report = detect_alerts(frame, rules=(JUMPS["hr_jump"],))
    table = alerts_frame(report)
    assert len(table) == 1 and table.loc[0, "value"] == 118 and table.loc[0, "n_readings"] == 1
    assert table.loc[0, "time"] == frame.time.iloc[10] and table.loc[0, "rule_id"] == "hr_jump"
    assert table.equals(report.frame())
    empty = alerts_frame(())
    assert empty.empty and "message" in empty.columns


def test_rules_refuse_bad_values_and_say_which():
    with pytest.raises(ConfigError, match="direction 'sideways'"):
        dataclasses.replace(SHIFTS["hr_resting_up"], direction="sideways")
    with pytest.raises(ConfigError, match="change 1.5"):
        dataclasses.replace(SHIFTS["steps_down"], change=1.5)
    with pytest.raises(ConfigError, match="min_history 20"):
        JumpRule("x", "heart_rate", 25, 3, min_history=20)
    with pytest.raises(ConfigError, match="lookback 'soon'"):
        JumpRule("x", "heart_rate", 25, 3, lookback="soon")


def test_the_result_is_deterministic():
    frame = pd.concat([readings([60] * 28 + [75] * 7, patient=p) for p in ("b", "a")], ignore_index=True)
    first, second = detect_alerts(frame), detect_alerts(frame.sample(frac=1, random_state=3))
    assert first == second and [a.patient_id for a in first.alerts] == ["a", "b"]


def test_fitbit_export_alerts_point_at_real_readings():
    from conftest import SHARED_DATA

    from healthmon.ingest.fitbit import read_fitbit

    folder = SHARED_DATA / "fitbit"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    frame = read_fitbit(folder).frame
    report = detect_alerts(frame)
    usable = frame[~frame.artefact]
    known = set(zip(usable.patient_id, usable.parameter, usable.time, usable.value.astype(float)))
    assert report.alerts and report.now == frame.time.max()
    for alert in report.alerts:
        assert alert.readings and all((alert.patient_id, alert.parameter, t, v) in known for t, v in alert.readings)
    times = [a.time for a in report.alerts]
    assert times == sorted(times)
    assert {a.parameter for a in report.alerts} <= {"steps", "sleep_minutes", "weight"}
    assert report.skipped and all(" for " in s and s.endswith(")") for s in report.skipped)


def minute_wearable(heart_rates, steps_per_minute) -> pd.DataFrame:
    """A wearable's minute export: heart rate and steps each minute."""
    return pd.concat([readings(heart_rates, every="1min"),
                      readings(steps_per_minute, "steps", every="1min")], ignore_index=True)


def test_a_heart_rate_rise_while_walking_is_named_but_not_alerted():
    rule = JUMPS["hr_jump"]
    resting = [70, 71, 69, 70, 72, 70, 71, 70, 69, 70]
    # 100 steps a minute for the 10 minutes before the rise to 110 /min: a walk, not an event.
    walk = minute_wearable(resting + [110, 112], [0] * 2 + [100] * 10)
    report = detect_alerts(walk, rules=(rule,))
    assert report.alerts == () and len(report.not_alerted) == 2
    assert report.not_alerted[0] == (
        "Heart rate 110 /min at 2026-01-01 08:10 UTC for p1: 40 /min above the median of the previous readings, "
        "70 /min, with 900 steps in the 10min before it: activity, not alerted (the rule sets aside rises with 500 "
        "or more steps) (hr_jump)")
    # The same rise sitting still is alerted, and so is a fall during the walk.
    still = minute_wearable(resting + [110, 112], [0] * 12)
    assert [a.direction for a in detect_alerts(still, rules=(rule,)).alerts] == ["up"]
    fall = minute_wearable(resting + [40], [0] + [100] * 10)
    assert [a.direction for a in detect_alerts(fall, rules=(rule,)).alerts] == ["down"]
    # 441 steps in the window is below the rule's 500: alerted.
    slow = minute_wearable(resting + [110], [0] * 2 + [49] * 9)
    assert len(detect_alerts(slow, rules=(rule,)).alerts) == 1


def test_a_rise_that_starts_with_a_walk_is_activity_but_one_that_starts_at_rest_is_not():
    rule = JUMPS["hr_jump"]
    resting = [70, 71, 69, 70, 72, 70, 71, 70, 69, 70]
    rise = [100, 102, 103, 101]  # 08:10-08:13, before 500 steps are behind any of them

    def alerts(steps):
        return detect_alerts(minute_wearable(resting + rise, steps), rules=(rule,))

    # The walk starts at 08:10 with the rise and goes on at 100 steps a minute.
    walk = alerts([0] * 10 + [100] * 10)
    assert walk.alerts == () and len(walk.not_alerted) == 4
    assert walk.not_alerted[0] == (
        "Heart rate 100 /min at 2026-01-01 08:10 UTC for p1: 30 /min above the median of the previous readings, "
        "70 /min, at the start of a walk of 1000 steps in its first 10min: activity, not alerted (the rule sets aside "
        "rises with 500 or more steps) (hr_jump)")
    # The rise came first, at rest, and the walk a minute later: alerted.
    assert [a.direction for a in alerts([0] * 11 + [100] * 9).alerts] == ["up"]
    # A walk of 300 steps is not the rule's walking: alerted.
    assert [a.direction for a in alerts([0] * 10 + [100] * 3 + [0] * 7).alerts] == ["up"]
    # Readings every 5 minutes: the rise starts with a 10-minute walk and is still there 10 and
    # 15 minutes after the walk ended: those readings are alerted (poor recovery), not the walk.
    every5 = readings([70] * 10 + [130] * 6, every="5min")
    walk10 = readings([100] * 10, "steps", start=every5.time.iloc[9] + pd.Timedelta("1min"), every="1min")
    still_high = detect_alerts(pd.concat([every5, walk10], ignore_index=True), rules=(rule,))
    assert [a.time for a in still_high.alerts] == [every5.time.iloc[13]]
    assert len(still_high.not_alerted) == 3  # 08:50-09:00, with the walk's steps behind them
    # Too big for a walk's start: 165 /min (3 NEWS2 points), or 50 /min up (twice the rule's amount).
    for peak in (165, 120):
        onset = detect_alerts(minute_wearable(resting + [peak] * 4, [0] * 10 + [100] * 10), rules=(rule,))
        assert [a.current for a in onset.alerts] == [peak]
    # Heart rate every 5 seconds, steps a minute: 5 steps stamped just before a jump at rest are
    # not a walk, though a walk follows.
    seconds = readings([70] * 12 + [110] * 4, every="5s")  # the jump at 08:01:00, the 5 steps' stamp
    shuffle = readings([0, 5] + [100] * 10, "steps", every="1min")
    assert len(detect_alerts(pd.concat([seconds, shuffle], ignore_index=True), rules=(rule,)).alerts) == 1


def test_a_fall_back_to_normal_after_a_walk_is_recovery_but_a_fall_out_of_the_band_or_mid_walk_is_not():
    rule = JUMPS["hr_jump"]
    resting, walking = [70, 71, 69, 70, 72, 70, 71, 70, 69, 70], [101, 103, 102, 104, 102, 103, 101, 102, 103, 102]
    # 100 steps a minute from 08:05, so the rise at 08:10 already has 600 steps behind it: activity.
    walk_steps = [0] * 5 + [100] * 15

    def after(heart_rates, steps):
        return detect_alerts(minute_wearable(resting + walking + heart_rates, walk_steps + steps), rules=(rule,))

    # The walk ends at 08:20 and the heart rate is back at 72 a minute later: 30 /min below the
    # walk's median, which was never the patient's resting value.
    report = after([72, 71], [0, 0])
    assert report.alerts == ()
    assert report.not_alerted[-2] == (
        "Heart rate 72 /min at 2026-01-01 08:20 UTC for p1: 30 /min below the median of the previous readings, "
        "102 /min, the previous reading taken with 1000 steps in the 10min before it: recovery after activity "
        "into the NEWS2 zero-point band (51-90), not alerted (hr_jump)")
    # Out of the zero-point band (45 /min scores 1 NEWS2 point), or while still walking: alerted.
    assert [a.direction for a in after([45], [0]).alerts] == ["down"]
    assert [a.direction for a in after([70], [100]).alerts] == ["down"]
    # 49 steps in the minute since the last reading is slower than the rule's 50 a minute: stopped.
    assert after([70], [49]).alerts == ()

    def down(frame):
        return [a.direction for a in detect_alerts(frame, rules=(rule,)).alerts]

    walked = minute_wearable(resting + walking, walk_steps)
    # Half an hour after the walk, or at the same minute as its last reading: not recovery.
    later = readings([72], start=walked.time.max() + pd.Timedelta("30min"))
    assert down(pd.concat([walked, later], ignore_index=True)) == ["down"]
    assert down(pd.concat([walked, readings([72], start=walked.time.max())], ignore_index=True)) == ["down"]
    # A tachycardic patient at 120 walks for 5 minutes and drops to 58: the median was mostly their
    # resting 120, not the walk's, so the drop is alerted.
    tachycardic = minute_wearable([120] * 10 + [122] * 5 + [58], [0] * 10 + [100] * 5 + [0])
    assert down(tachycardic) == ["down"]
    # After a 12-minute walk the median is the walk's, but 58 is far below the 120 before it.
    assert down(minute_wearable([120] * 10 + [122] * 12 + [58], [0] * 10 + [100] * 12 + [0])) == ["down"]
    # Exactly the rule's 25 /min below the level before the walk (80, then 55) alerts, as at rest.
    assert down(minute_wearable([80] * 10 + [105] * 10 + [55], [0] * 10 + [100] * 10 + [0])) == ["down"]
    # Two walks eight minutes apart: the level before the second is the rest between them.
    two_walks = minute_wearable([70] * 10 + [100] * 10 + [70] * 8 + [100] * 10 + [69],
                                [0] * 10 + [100] * 10 + [0] * 8 + [100] * 10 + [0])
    assert down(two_walks) == []


def test_daily_step_totals_do_not_explain_a_heart_rate_rise():
    # A Fitbit daily total stamped at midnight says nothing about when the walking was.
    heart = readings([70] * 10 + [110], every="1min")
    daily = readings([12000, 11000], "steps", start="2025-12-31", every="1D")
    report = detect_alerts(pd.concat([heart, daily], ignore_index=True), rules=(JUMPS["hr_jump"],))
    assert len(report.alerts) == 1 and report.not_alerted == ()


def test_an_activity_setting_that_cannot_work_is_refused():
    with pytest.raises(ConfigError, match="activity_window 'later'"):
        JumpRule("x", "heart_rate", 25, 3, activity_steps=500, activity_window="later")
    with pytest.raises(ConfigError, match="activity_steps -1"):
        JumpRule("x", "heart_rate", 25, 3, activity_steps=-1)
