"""NEWS2 (RCP 2017) and blood-pressure staging (ACC/AHA 2017, ESC/ESH 2018), boundary by boundary.

Every band edge of every NEWS2 chart row is tested on both sides, then hypothesis checks
whole ranges against the chart written out a second way (as the printed ranges), so the
table and the test cannot share a typo.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthmon.vitals import classify_bp, esc_grade, score_news2
from healthmon.vitals.news2 import VitalsError, band_points
from healthmon.vitals.bp import CUFFLESS

# (value, points) on both sides of every printed edge.
EDGES = {
    "respiration_rate": [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)],
    "spo2_scale1": [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)],
    "spo2_scale2_air": [(83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 0), (100, 0)],
    "spo2_scale2_oxygen": [(83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 1), (94, 1), (95, 2),
                           (96, 2), (97, 3), (100, 3)],
    "systolic_bp": [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)],
    "heart_rate": [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
    "temperature": [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)],
}


@pytest.mark.parametrize("row,value,points", [(row, v, p) for row, edges in EDGES.items() for v, p in edges])
def test_every_band_edge_of_the_news2_chart(row, value, points):
    assert band_points(row, value) == points


# The chart as printed: (low, high, points) inclusive ranges of whole numbers (temperature in tenths).
PRINTED = {
    "respiration_rate": [(0, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, 80, 3)],
    "spo2_scale1": [(0, 91, 3), (92, 93, 2), (94, 95, 1), (96, 100, 0)],
    "spo2_scale2_air": [(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 100, 0)],
    "spo2_scale2_oxygen": [(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, 94, 1), (95, 96, 2), (97, 100, 3)],
    "systolic_bp": [(30, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, 300, 3)],
    "heart_rate": [(10, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, 300, 3)],
    "temperature": [(250, 350, 3), (351, 360, 1), (361, 380, 0), (381, 390, 1), (391, 450, 2)],
}


def _printed_points(row: str, value: int) -> int:
    return next(points for low, high, points in PRINTED[row] if low <= value <= high)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PRINTED)), st.data())
def test_whole_ranges_agree_with_the_printed_chart(row, data):
    low, high = PRINTED[row][0][0], PRINTED[row][-1][1]
    value = data.draw(st.integers(low, high))
    shown = value / 10 if row == "temperature" else value
    assert band_points(row, shown) == _printed_points(row, value)


@settings(max_examples=200, deadline=None)
@given(st.floats(9.5, 79.4, allow_nan=False))
def test_values_between_printed_bands_are_rounded_like_a_chart_entry(value):
    # An averaged respiration rate of 11.5 is charted as 12, not as 11.
    assert band_points("respiration_rate", value) == _printed_points("respiration_rate", int(value + 0.5))


def _full(**overrides):
    normal = dict(respiration_rate=16, spo2=97, on_oxygen=False, systolic_bp=120, heart_rate=70, consciousness="A",
                  temperature=37.0)
    return score_news2(**{**normal, **overrides})


def test_a_normal_set_scores_zero_with_routine_monitoring():
    score = _full()
    assert score.total == 0 and score.band == "low" and score.complete and not score.red_flag
    assert score.monitoring == "minimum every 12 hours"


def test_aggregate_bands_and_the_three_in_one_parameter_rule():
    assert (_full(heart_rate=95).total, _full(heart_rate=95).band) == (1, "low")
    assert _full(heart_rate=95).monitoring == "minimum every 4-6 hours"
    red = _full(consciousness="V")  # 3 points in a single parameter, total 3
    assert (red.total, red.band, red.red_flag, red.monitoring) == (3, "low-medium", True, "minimum every hour")
    four = _full(respiration_rate=22, heart_rate=112)  # 2 + 2
    assert (four.total, four.band) == (4, "low")
    five = _full(respiration_rate=22, heart_rate=112, temperature=38.5)
    assert (five.total, five.band) == (5, "medium")
    six = _full(respiration_rate=22, heart_rate=112, temperature=39.5)
    assert (six.total, six.band) == (6, "medium")
    seven = _full(respiration_rate=25, heart_rate=112, temperature=38.5, spo2=95)  # 3 + 2 + 1 + 1
    assert (seven.total, seven.band, seven.monitoring) == (7, "high", "continuous monitoring")
    eight = _full(respiration_rate=25, heart_rate=112, temperature=38.5, on_oxygen=True)
    assert (eight.total, eight.band) == (8, "high")
    assert _full(respiration_rate=25, heart_rate=112, temperature=38.5).total == 6


def test_oxygen_scores_two_and_scale_two_treats_high_saturation_on_oxygen_as_a_risk():
    assert _full(on_oxygen=True).points["air_or_oxygen"] == 2
    assert _full(spo2=97, on_oxygen=True, spo2_scale=2).points["spo2"] == 3
    assert _full(spo2=97, on_oxygen=False, spo2_scale=2).points["spo2"] == 0
    assert _full(spo2=90, on_oxygen=True, spo2_scale=2).points["spo2"] == 0
    assert _full(spo2=90, on_oxygen=True, spo2_scale=1).points["spo2"] == 3


@pytest.mark.parametrize("letter,points", [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3), ("alert", 0),
                                           ("a", 0), ("new confusion", 3), ("Confused", 3), ("voice", 3),
                                           ("pain", 3), ("unresponsive", 3), ("Verbal", 3), ("responds to pain", 3),
                                           ("unconscious", 3)])
def test_acvpu(letter, points):
    assert _full(consciousness=letter).points["consciousness"] == points


@pytest.mark.parametrize("word", ["agitated", "awake", "asleep", "AV", "drowsy"])
def test_a_consciousness_word_is_not_read_by_its_first_letter(word):
    # "agitated" is not Alert (0 points): it may be new confusion (3); the caller must say which.
    with pytest.raises(VitalsError, match="ACVPU"):
        _full(consciousness=word)


def test_missing_parameters_are_allowed_and_named_and_home_readings_carry_the_setting_caveat():
    partial = score_news2(heart_rate=120, spo2=93, setting="home")
    assert partial.total == 4 and not partial.complete
    assert set(partial.missing) == {"respiration_rate", "air_or_oxygen", "systolic_bp", "consciousness", "temperature"}
    assert "under-stated" in partial.caveat and "outside the setting" in partial.caveat


@pytest.mark.parametrize("kwargs,fix", [
    ({"heart_rate": 400}, "artefact"), ({"spo2": 101}, "SpO2"), ({"temperature": 99.5}, "°C"),
    ({"consciousness": "X"}, "Alert"), ({"spo2_scale": 3}, "88-92"),
])
def test_impossible_values_are_refused_with_what_to_do(kwargs, fix):
    with pytest.raises(VitalsError, match=fix):
        score_news2(**kwargs)


@settings(max_examples=300, deadline=None)
@given(rr=st.integers(0, 80), spo2=st.integers(70, 100), oxygen=st.booleans(), sbp=st.integers(30, 300),
       hr=st.integers(10, 300), avpu=st.sampled_from("ACVPU"), temp=st.integers(300, 430))
def test_the_total_is_the_sum_of_the_parts_and_the_band_follows_the_rcp_rules(rr, spo2, oxygen, sbp, hr, avpu, temp):
    score = score_news2(respiration_rate=rr, spo2=spo2, on_oxygen=oxygen, systolic_bp=sbp, heart_rate=hr,
                        consciousness=avpu, temperature=temp / 10)
    # Each part read off the printed chart (not the library's table), then added up here.
    expected_points = {
        "respiration_rate": _printed_points("respiration_rate", rr), "spo2": _printed_points("spo2_scale1", spo2),
        "air_or_oxygen": 2 if oxygen else 0, "systolic_bp": _printed_points("systolic_bp", sbp),
        "heart_rate": _printed_points("heart_rate", hr), "consciousness": 0 if avpu == "A" else 3,
        "temperature": _printed_points("temperature", temp),
    }
    assert score.points == expected_points
    total = sum(expected_points.values())
    assert score.total == total
    expected = ("high" if total >= 7 else "medium" if total >= 5
                else "low-medium" if 3 in expected_points.values() else "low")
    assert score.band == expected


# ---------------------------------------------------------------- blood pressure
@pytest.mark.parametrize("reading,category", [
    ((119, 79), "normal"), ((120, 79), "elevated"), ((129, 79), "elevated"), ((130, 79), "stage 1 hypertension"),
    ((119, 80), "stage 1 hypertension"), ((139, 89), "stage 1 hypertension"), ((140, 70), "stage 2 hypertension"),
    ((125, 90), "stage 2 hypertension"), ((180, 120), "stage 2 hypertension"),
])
def test_acc_aha_office_boundaries(reading, category):
    result = classify_bp([reading, reading])
    assert result.category == category and not result.caveat


@pytest.mark.parametrize("reading,crisis", [((180, 120), False), ((181, 100), True), ((150, 121), True)])
def test_hypertensive_crisis_is_strictly_above_180_or_120(reading, crisis):
    assert classify_bp([reading, reading]).crisis is crisis


@pytest.mark.parametrize("reading,category", [
    ((129, 79), "elevated"), ((130, 79), "stage 1 hypertension"), ((134, 84), "stage 1 hypertension"),
    ((135, 80), "stage 2 hypertension"), ((128, 85), "stage 2 hypertension"),
    ((119, 79), "normal"), ((119, 80), "stage 1 hypertension"), ((120, 79), "elevated"), ((119, 84), "stage 1 hypertension"),
    ((119, 85), "stage 2 hypertension"),
])
def test_home_readings_use_the_home_thresholds(reading, category):
    assert classify_bp([reading, reading], setting="home").category == category
    assert "home" in classify_bp([reading, reading], setting="home").guideline


def test_readings_are_averaged_and_single_or_cuffless_readings_are_flagged():
    assert classify_bp([(150, 85), (120, 75)]).systolic == 135
    assert "one reading only" in classify_bp([(150, 85)]).caveat
    cuffless = classify_bp([(190, 125), (190, 125)], cuffless=True)
    assert "trends only" in cuffless.caveat
    # Never staged: no category, and no crisis from estimates (the pages ask for a cuff reading).
    assert (cuffless.category, cuffless.crisis, cuffless.cuffless) == (CUFFLESS, False, True)
    with pytest.raises(VitalsError, match="swapped"):
        classify_bp([(80, 120)])


@pytest.mark.parametrize("reading,grade", [
    ((119, 79), "optimal"), ((120, 79), "normal"), ((129, 84), "normal"), ((130, 84), "high normal"),
    ((125, 85), "high normal"), ((139, 89), "high normal"), ((140, 90), "grade 1 hypertension"),
    ((159, 99), "grade 1 hypertension"), ((160, 95), "grade 2 hypertension"), ((179, 109), "grade 2 hypertension"),
    ((180, 95), "grade 3 hypertension"), ((150, 110), "grade 3 hypertension"),
    ((145, 85), "isolated systolic hypertension (grade 1 hypertension)"),
    # Diastolic edges alone, and the isolated-systolic edge (>= 140 with < 90).
    ((119, 80), "normal"), ((119, 84), "normal"), ((119, 85), "high normal"), ((119, 89), "high normal"),
    ((119, 90), "grade 1 hypertension"), ((119, 99), "grade 1 hypertension"), ((119, 100), "grade 2 hypertension"),
    ((119, 109), "grade 2 hypertension"), ((119, 110), "grade 3 hypertension"),
    ((140, 89), "isolated systolic hypertension (grade 1 hypertension)"),
    ((165, 85), "isolated systolic hypertension (grade 2 hypertension)"),
])
def test_esc_esh_grades(reading, grade):
    assert esc_grade([reading]) == grade


ORDER = ["normal", "elevated", "stage 1 hypertension", "stage 2 hypertension"]


@settings(max_examples=300, deadline=None)
@given(sbp=st.integers(90, 250), dbp=st.integers(40, 85), up=st.integers(0, 30), setting=st.sampled_from(["office", "home"]))
def test_a_higher_pressure_never_gives_a_lower_category(sbp, dbp, up, setting):
    base = ORDER.index(classify_bp([(sbp, dbp)], setting=setting).category)
    assert ORDER.index(classify_bp([(sbp + up, dbp)], setting=setting).category) >= base
    assert ORDER.index(classify_bp([(sbp + up + 10, dbp + up)], setting=setting).category) >= base


def test_on_scale_2_with_oxygen_unrecorded_the_caveat_says_what_the_spo2_points_hang_on():
    unknown = score_news2(spo2=97, spo2_scale=2)
    assert unknown.points["spo2"] == 0  # scored on air, as documented
    assert "SpO2 97 % on scale 2 scores 0 on air, as scored here, but 3 on oxygen (and oxygen itself 2)" in unknown.caveat
    # Where both rows agree (88-92 %), and where oxygen is recorded, nothing more is said.
    assert "on scale 2 scores" not in score_news2(spo2=90, spo2_scale=2).caveat
    assert "on scale 2 scores" not in score_news2(spo2=97, spo2_scale=2, on_oxygen=False).caveat


def test_a_news2_alert_names_each_value_as_charted_so_it_agrees_with_its_points():
    from healthmon.vitals.news2_alerts import _news2_reading

    # 35.05 °C is charted 35.1 and scores 1; shown as "35" it would read as a 3-point value.
    row = {"points_temperature": band_points("temperature", 35.05), "value_temperature": 35.05}
    assert _news2_reading(row, "points_temperature") == "temperature 35.1 °C: 1"
    row = {"points_heart_rate": band_points("heart_rate", 50.5), "value_heart_rate": 50.5}
    assert _news2_reading(row, "points_heart_rate") == "heart rate 51 /min: 0"
