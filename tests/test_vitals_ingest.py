"""Generic wide vitals CSV: aliases, unit conversion, artefacts, rejected rows; NEWS2 over time."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from conftest import SHARED_DATA
from healthmon.errors import IngestError
from healthmon.ingest.vitals_csv import read_vitals_csv
from healthmon.vitals.series import news2_over_time

CSV = """timestamp,patient,pulse,BP,SpO2,resp,temp_f,AVPU,O2,glucose_mmol,weight_lb,notes
2026-03-01 08:00,p1,72,118/76,97,16,98.6,A,air,5.5,154,ok
2026-03-01 09:00,p1,0,121/79,101,18,99.1,alert,no,6.1,,strap loose
not a time,p1,80,120/80,97,16,98.6,A,air,5.0,154,
2026-03-01 10:00,p1,128,,93,24,101.3,V,yes,,,
2026-03-01 08:30,p2,400,90/60,-5,abc,97.0,X,maybe,,,
"""


def test_columns_are_found_by_alias_units_converted_and_artefacts_flagged_not_dropped():
    data = read_vitals_csv(CSV.encode(), "ward.csv")
    report, frame = data.report, data.frame
    assert report.columns["heart_rate"] == "pulse" and report.columns["blood_pressure"] == "BP"
    assert report.columns["temperature"] == "temp_f" and report.ignored_columns == ["notes"]
    assert report.rows_read == 5 and report.rows_rejected == 1 and report.rejected[0][0] == 4
    assert any("°F" in c for c in report.conversions) and any("mmol/L" in c for c in report.conversions)
    assert any("lb" in c for c in report.conversions)
    first = frame[(frame.patient_id == "p1") & (frame.time == pd.Timestamp("2026-03-01 08:00", tz="UTC"))]
    values = dict(zip(first.parameter, first.value))
    assert values["temperature"] == pytest.approx(37.0, abs=0.01)
    assert values["glucose"] == pytest.approx(99.1, abs=0.1) and values["weight"] == pytest.approx(69.85, abs=0.01)
    assert (values["systolic_bp"], values["diastolic_bp"], values["on_oxygen"], values["consciousness"]) == (118, 76, 0, 0)
    # Heart rate 0 and 400, SpO2 101 and -5 are kept, flagged, and will not be scored.
    flagged = frame[frame.artefact]
    assert {("p1", "heart_rate"), ("p1", "spo2"), ("p2", "heart_rate"), ("p2", "spo2")} <= set(
        zip(flagged.patient_id, flagged.parameter))
    # Unparseable cells are flagged with the reason, not silently dropped.
    reasons = " | ".join(why for _, _, why in report.flagged)
    assert "'abc' is not a number" in reasons and "'X' is not A, C, V, P or U" in reasons and "'maybe'" in reasons
    assert report.values_flagged == len(flagged) and report.values_read == len(frame)


def test_a_file_without_time_or_vitals_columns_says_what_to_rename():
    with pytest.raises(IngestError, match="time column"):
        read_vitals_csv(b"pulse,spo2\n70,98\n")
    with pytest.raises(IngestError, match="vitals column"):
        read_vitals_csv(b"time,comment\n2026-01-01,hello\n")


def _march(frame: pd.DataFrame) -> list[str]:
    return [f"{t:%Y-%m-%d %H:%M}" for t in frame.loc[frame.parameter == "heart_rate", "time"]]


def test_numeric_dates_are_read_in_one_order_for_the_whole_file():
    # A per-cell guess reads 12/03 as 3 December and 13/03 as 13 March in the same file.
    uk = read_vitals_csv(b"date,pulse\n12/03/2026 08:00,70\n13/03/2026 08:00,72\n", "uk.csv", patient_id="p")
    assert _march(uk.frame) == ["2026-03-12 08:00", "2026-03-13 08:00"]
    assert "dates read as day/month, as line 3 ('13/03/2026 08:00') shows" in uk.report.conversions
    assert not uk.report.ambiguous_dates
    us = read_vitals_csv(b"date,pulse\n03/12/2026,70\n03/13/2026,72\n", "us.csv", patient_id="p", date_order="day/month")
    assert _march(us.frame) == ["2026-03-12 00:00", "2026-03-13 00:00"]  # the file shows its order; it wins
    dotted = read_vitals_csv(b"date,pulse\n13.03.26 08:00,70\n", "de.csv", patient_id="p")
    assert _march(dotted.frame) == ["2026-03-13 08:00"]
    # Nothing in the file decides: day/month unless the caller says otherwise, and reported as ambiguous.
    ambiguous = b"date,pulse\n03/04/2026,70\n"
    default = read_vitals_csv(ambiguous, "a.csv", patient_id="p")
    assert _march(default.frame) == ["2026-04-03 00:00"] and default.report.ambiguous_dates
    assert any("could be day/month or month/day: read as day/month" in c for c in default.report.conversions)
    assert _march(read_vitals_csv(ambiguous, "a.csv", patient_id="p", date_order="month/day").frame) == [
        "2026-03-04 00:00"]
    # ISO dates are not numeric day/month dates and are read as they are.
    assert _march(read_vitals_csv(b"time,pulse\n2026-03-04T08:00,70\n", "iso.csv", patient_id="p").frame) == [
        "2026-03-04 08:00"]
    with pytest.raises(IngestError, match=r"line 2 '13/03/2026' \(day first\) and line 3 '03/14/2026'"):
        read_vitals_csv(b"date,pulse\n13/03/2026,70\n03/14/2026,72\n", "mixed.csv", patient_id="p")
    with pytest.raises(IngestError, match="day/month"):
        read_vitals_csv(ambiguous, "a.csv", date_order="dd/mm")


def test_a_date_column_and_a_time_column_are_joined_and_a_time_without_a_date_is_rejected():
    joined = read_vitals_csv(b"Date,Time,Pulse\n2025-01-01,08:00,70\n2025-01-02,21:30:15,71\n", "split.csv",
                             patient_id="p")
    assert _march(joined.frame) == ["2025-01-01 08:00", "2025-01-02 21:30"]
    assert joined.report.columns["date"] == "Date" and joined.report.ignored_columns == []
    # Spreadsheets fill the date on a day's first row only, or leave a time blank: those rows are
    # rejected, not dated 0001-01-01 or midnight. A full date-time in the time column is kept as it is.
    gaps = read_vitals_csv(b"date,time,pulse\n2026-03-04,08:00,70\n,12:00,71\n2026-03-04,,72\n"
                           b"2026-03-04,2026-03-05 08:00,73\n", "gaps.csv", patient_id="p")
    assert _march(gaps.frame) == ["2026-03-04 08:00", "2026-03-05 08:00"]
    assert gaps.report.rejected == [(3, "no date in column 'date' for this time"), (4, "blank time in column 'time'")]
    # A study-day or weekday column is not a date: the joined cell is named in the rejection.
    days = read_vitals_csv(b"day,time,pulse\n1,08:00,70\nMonday,09:00,71\n", "days.csv", patient_id="p")
    assert days.frame.empty and [line for line, _ in days.report.rejected] == [2, 3]
    assert "'1 08:00' (columns 'day' + 'time') reads as 1-01-01 08:00" in days.report.rejected[0][1]
    assert "unreadable time 'Monday 09:00' (columns 'day' + 'time')" == days.report.rejected[1][1]
    # A column named for a date and time is preferred to a time-of-day column beside it.
    both = read_vitals_csv(b"datetime,time,pulse\n2026-03-04 08:00,08:00,70\n", "both.csv", patient_id="p")
    assert _march(both.frame) == ["2026-03-04 08:00"] and both.report.ignored_columns == ["time"]


@pytest.mark.parametrize("cell", ["08:00", "08:00Z", "08:00+01:00", "08:00 UTC", "8 PM", "8:30am", "T08:00"])
def test_a_time_of_day_without_a_date_is_rejected_never_given_todays_date(cell):
    data = read_vitals_csv(f"time,pulse\n{cell},70\n2026-03-01 09:00,71\n".encode(), "clock.csv", patient_id="p")
    assert data.report.rejected == [(2, "time of day with no date: add a date column, or write the date in 'time'")]
    assert _march(data.frame) == ["2026-03-01 09:00"]


@pytest.mark.parametrize("cell,why", [
    ("0800", "reads as 800-01-01 00:00, not a date between 1990 and tomorrow"),  # a time read as a year
    ("3/4/99", "reads as 2099-04-03 00:00"),  # a two-digit year read as 20yy
    ("46085.33", "a spreadsheet's serial day number; format the column as date and time"),
])
def test_a_time_that_cannot_be_a_reading_is_rejected_with_what_to_do(cell, why):
    data = read_vitals_csv(f"time,pulse\n{cell},70\n".encode(), "odd.csv", patient_id="p")
    assert data.frame.empty and why in data.report.rejected[0][1]


def test_semicolon_and_tab_separated_files_are_read_and_said():
    semicolons = read_vitals_csv(b"time;pulse;temp\n2026-03-04 08:00;70;37,5\n", "eu.csv", patient_id="p")
    assert dict(zip(semicolons.frame.parameter, semicolons.frame.value)) == {"heart_rate": 70, "temperature": 37.5}
    assert "columns separated by ';'" in semicolons.report.conversions
    tabs = read_vitals_csv("time\tpulse\n2026-03-04 08:00\t70\n".encode("utf-16"), "unicode.txt", patient_id="p")
    assert len(tabs.frame) == 1 and "columns separated by tabs" in tabs.report.conversions


def test_a_row_with_a_blank_patient_is_rejected_not_filed_under_an_empty_id():
    data = read_vitals_csv(b"time,patient,pulse\n2026-03-01 08:00,p1,70\n2026-03-01 09:00, ,71\n", "ward.csv")
    assert data.report.rows_rejected == 1 and "blank patient id" in data.report.rejected[0][1]
    assert set(data.frame.patient_id) == {"p1"}


def test_spreadsheet_encodings_are_read_and_said_and_unreadable_bytes_refused():
    text = "timestamp,patient,temp °F,pulse\n2026-03-01 08:00,p1,98.6,70\n"
    windows = read_vitals_csv(text.encode("cp1252"), "excel.csv")
    assert windows.report.columns["temperature"] == "temp °F"
    assert dict(zip(windows.frame.parameter, windows.frame.value))["temperature"] == pytest.approx(37.0)
    assert any("read as Windows-1252" in c for c in windows.report.conversions)
    # The ordinal sign Windows-1252 and Iberian exports write for a degree is a degree too.
    ordinal = read_vitals_csv("timestamp,patient,Temp (ºF),pulse\n2026-03-01 08:00,p1,101.3,70\n".encode("cp1252"),
                              "export.csv")
    assert dict(zip(ordinal.frame.parameter, ordinal.frame.value))["temperature"] == pytest.approx(38.5)
    padded = read_vitals_csv(text.encode() + b"\x00" * 300, "logger.csv")  # a logger's block padding
    assert len(padded.frame) == 2 and "300 NUL byte(s) of padding at the end of the file ignored" in (
        padded.report.conversions)
    utf16 = read_vitals_csv(text.encode("utf-16"), "excel16.csv")
    assert len(utf16.frame) == 2 and "read as UTF-16 text" in utf16.report.conversions
    with pytest.raises(IngestError, match="CSV UTF-8"):
        read_vitals_csv(b"time,pulse\n2026-03-01,\x81\x8d\n", "binary.csv", patient_id="p")


def test_rows_whose_fields_do_not_line_up_are_rejected_with_their_line_never_shifted_or_cut():
    # A separator after every row is harmless; "36,5" in a comma file would have shifted the row
    # (or, told not to, cut 36.5 to 36). Blank lines and a quoted line break count as lines.
    trailing = read_vitals_csv(b"timestamp,hr,spo2\n2026-03-01 08:00,80,97,\n2026-03-01 09:00,81,98,\n",
                               "watch.csv", patient_id="P1")
    assert list(trailing.frame.value) == [80, 97, 81, 98] and not trailing.report.rejected
    assert "2 row(s) end with an extra separator: the empty last field ignored" in trailing.report.conversions
    assert "2 time(s) without a time zone read as UTC" in trailing.report.conversions
    mixed = read_vitals_csv(b"timestamp,hr\n2026-03-29 08:00,80\n2026-03-29T08:30+01:00,81\n", "m.csv",
                            patient_id="P1")
    assert "1 time(s) without a time zone read as UTC; 1 other(s) give their own: check they agree" in (
        mixed.report.conversions)
    text = (b'patient,timestamp,temp,comment\nP1,2026-03-01 08:00,36,5,\n\nP1,2026-03-01 09:00,37,"two\nlines"\n'
            b"P1,2026-03-01 10:00,abc,\n P1 ,2026-03-01 11:00,37.2,\n")
    data = read_vitals_csv(text, "ward.csv")
    assert data.report.rejected == [(2, "5 fields where the header has 4: a decimal comma in a comma-separated file, "
                                        "or a separator inside a cell; quote that cell or separate the columns with ';'")]
    assert data.report.flagged == [(6, "temperature", "temperature 'abc' is not a number")]  # line 6 in an editor
    assert list(data.frame.dropna(subset=["value"]).value) == [37.0, 37.2]
    assert set(data.frame.patient_id) == {"P1"}  # " P1 " is the same patient, not a second one
    with pytest.raises(IngestError, match="no header row"):
        read_vitals_csv(b"\n\n", "empty.csv")
    old_mac = read_vitals_csv(b"time,hr\r2026-01-01 10:00,80\r2026-01-01 11:00,81\r", "mac.csv", patient_id="P1")
    assert list(old_mac.frame.value) == [80, 81]  # carriage returns alone end the rows
    with pytest.raises(IngestError, match="unclosed.csv line 3: unexpected end of data"):
        read_vitals_csv(b'time,hr\n2026-01-01 10:00,"80\n2026-01-01 11:00,81\n', "unclosed.csv", patient_id="P1")


def test_a_count_with_a_thousands_separator_is_read_as_thousands():
    data = read_vitals_csv(b'date,steps,temp\n2026-03-01,"12,345","36,6"\n2026-03-02,"9,870","37,0"\n', "a.csv",
                           patient_id="P1")
    values = data.frame.groupby("parameter")["value"].apply(list).to_dict()
    assert values == {"steps": [12345.0, 9870.0], "temperature": [36.6, 37.0]}  # a temperature's comma is a decimal
    assert "2 steps value(s) such as '12,345' read with a thousands separator" in data.report.conversions
    assert set(data.frame.source) == {"a.csv"}
    semicolons = read_vitals_csv(b"date;steps\n2026-03-01;12.345\n", "b.csv", patient_id="P1")
    assert list(semicolons.frame.value) == [12345.0]


@pytest.mark.parametrize("cells,reads_as", [("5.2", 93.7), ("110\n95", 102.5), ("30", None), ("22\n35", None)])
def test_glucose_without_a_unit_is_read_only_where_its_values_tell_the_unit(cells, reads_as):
    text = "date,glucose\n" + "".join(f"2026-03-0{i + 1},{v}\n" for i, v in enumerate(cells.split("\n")))
    if reads_as is None:  # 30 is a severe hypo in mg/dL and 540 mg/dL in mmol/L: no guess
        with pytest.raises(IngestError, match="rename the column glucose_mgdl or glucose_mmol") as refused:
            read_vitals_csv(text.encode(), "g.csv", patient_id="P1")
        assert "which reads as" in str(refused.value)
    else:
        median = read_vitals_csv(text.encode(), "g.csv", patient_id="P1").frame.value.median()
        assert median == pytest.approx(reads_as, abs=0.1)


def test_an_id_column_that_counts_the_rows_is_not_read_as_the_patient():
    from healthmon.errors import PatientUnknownError

    rows = "".join(f"{n},2026-03-01 {7 + n:02d}:00,{70 + n}\n" for n in range(1, 6))
    # A row number read as patients makes five people of one; dropped, a ward list of one row per
    # patient would become one person. Neither is guessed: whose readings they are is asked.
    with pytest.raises(PatientUnknownError, match=r"column 'id' whose values count the rows .* on 5 rows"):
        read_vitals_csv(("id,timestamp,hr\n" + rows).encode(), "export.csv")
    given = read_vitals_csv(("id,timestamp,hr\n" + rows).encode(), "export.csv", patient_id="P-1")
    assert set(given.frame.patient_id) == {"P-1"} and given.report.ignored_columns == ["id"]
    assert given.report.conversions[0].startswith("column 'id' not read as the patient: its values count the rows")
    # A Fitbit-style user id, repeated on the user's rows, is the patient.
    users = read_vitals_csv(b"Id,timestamp,hr\n1503960366,2026-03-01 08:00,70\n1503960366,2026-03-01 09:00,72\n"
                            b"1624580081,2026-03-01 08:00,64\n", "users.csv")
    assert set(users.frame.patient_id) == {"1503960366", "1624580081"} and not users.report.patient_from_file_name


def test_units_guessed_from_values_are_said_and_a_cold_patient_is_not_an_artefact():
    data = read_vitals_csv(b"time,patient,temp,glucose,weight\n2026-03-01 08:00,p1,28.4,5.2,80\n", "w.csv")
    values = dict(zip(data.frame.parameter, data.frame.value))
    # 28.4 C is accidental hypothermia, not an artefact: it keeps its 3 NEWS2 points.
    assert values["temperature"] == 28.4 and not data.frame.artefact.any()
    assert values["glucose"] == pytest.approx(93.7, abs=0.1) and values["weight"] == 80
    said = " | ".join(data.report.conversions)
    assert "glucose 'glucose' has no unit in its name: read as mmol/L (median 5.2)" in said
    assert "weight 'weight' has no unit in its name: read as kg" in said
    assert "temperature" not in said  # Celsius by its values: nothing converted


def test_news2_over_time_uses_the_latest_value_within_the_look_back():
    data = read_vitals_csv(CSV.encode(), "ward.csv")
    scores = news2_over_time(data.frame, lookback="90min")
    p1 = scores[scores.patient_id == "p1"].set_index("time")
    at8 = p1.loc[pd.Timestamp("2026-03-01 08:00", tz="UTC")]
    assert at8.total == 0 and at8.complete
    at9 = p1.loc[pd.Timestamp("2026-03-01 09:00", tz="UTC")]
    # The 09:00 heart rate (0) and SpO2 (101) are artefacts: the 08:00 values (within 90 min) stand in.
    assert at9.points_heart_rate == 0 and at9.points_spo2 == 0 and at9.complete
    at10 = p1.loc[pd.Timestamp("2026-03-01 10:00", tz="UTC")]
    # 128/min: 2, SpO2 93: 2, RR 24: 2, 38.5 °C: 1, V: 3, oxygen: 2, SBP from 09:00 (121): 0.
    assert (at10.points_heart_rate, at10.points_spo2, at10.points_respiration_rate, at10.points_temperature,
            at10.points_consciousness, at10.points_air_or_oxygen, at10.points_systolic_bp) == (2, 2, 2, 1, 3, 2, 0)
    assert at10.total == 12 and at10.band == "high"
    shorter = news2_over_time(data.frame, lookback="30min").set_index(["patient_id", "time"])
    late = shorter.loc[("p1", pd.Timestamp("2026-03-01 10:00", tz="UTC"))]
    assert math.isnan(late.points_systolic_bp) and not late.complete  # 09:00 is outside a 30-minute look-back


def test_fitbit_export_counts_match_the_files(tmp_path):


    from healthmon.ingest.fitbit import read_fitbit

    folder = SHARED_DATA / "fitbit"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    data = read_fitbit(folder)
    counts = data.frame.groupby("parameter").size().to_dict()
    raw = {name: pd.read_csv(folder / name) for name in ("dailyActivity_merged.csv", "sleepDay_merged.csv",
                                                          "weightLogInfo_merged.csv")}
    assert counts["steps"] == len(raw["dailyActivity_merged.csv"]) == 940
    assert counts["sleep_minutes"] == len(raw["sleepDay_merged.csv"].drop_duplicates()) == 410  # 413 rows, 3 duplicates
    assert counts["weight"] == len(raw["weightLogInfo_merged.csv"]) == 67
    assert data.report.rows_read == 940 + 413 + 67 and data.report.rows_rejected == 0
    assert any("3 exact duplicate" in c for c in data.report.conversions)
    # Days the tracker lay unworn (0 steps, all 1,440 minutes sedentary) are kept, flagged: counted from the file.
    activity = raw["dailyActivity_merged.csv"]
    unworn = int(((activity.TotalSteps == 0) & (activity.SedentaryMinutes >= 1440)).sum())
    steps = data.frame[data.frame.parameter == "steps"]
    assert unworn > 0 and int(steps.artefact.sum()) == unworn == data.report.values_flagged
    assert f"dailyActivity_merged.csv: {unworn} day(s) of 0 steps and 1,440 sedentary minutes flagged as not worn" in (
        data.report.conversions)
    assert data.frame["patient_id"].nunique() == raw["dailyActivity_merged.csv"]["Id"].nunique() == 33
    assert data.frame["time"].min() >= pd.Timestamp("2016-04-12", tz="UTC")


def test_a_broken_fitbit_file_is_refused_or_its_bad_rows_listed(tmp_path):
    from healthmon.ingest.fitbit import read_fitbit

    with pytest.raises(IngestError, match="merged.csv"):
        read_fitbit(tmp_path)
    (tmp_path / "sleepDay_merged.csv").write_text("Id,SleepDay,TotalMinutesAsleep\n1,4/12/2016,300\n1,garbage,x\n"
                                                  "2,4/13/2016,-5\n,4/14/2016,400\n")
    data = read_fitbit(tmp_path)
    assert data.report.rows_rejected == 2 and data.report.rejected[0][0] == 3
    assert data.report.rejected[1] == (5, "sleepDay_merged.csv: blank Id (whose day this is is unknown)")
    assert data.frame["artefact"].tolist() == [False, True]  # -5 minutes asleep is flagged, not dropped
    (tmp_path / "weightLogInfo_merged.csv").write_text("Id,When,Kg\n1,x,1\n")
    with pytest.raises(IngestError, match="WeightKg"):
        read_fitbit(tmp_path)


def test_a_physionet_record_maps_vitals_keeps_labs_and_lists_bad_lines():
    from healthmon.ingest.physionet import read_physionet_record

    record = ("Time,Parameter,Value\n00:00,RecordID,132539\n00:00,Age,54\n00:00,Weight,-1\n"
              "00:07,GCS,15\n00:07,HR,73\n00:07,NISysABP,147\n00:07,Temp,35.1\n00:07,Urine,900\n"
              "01:37,GCS,11\n01:37,FiO2,0.5\n01:37,SaO2,104\n01:37,HR,xx\n25:99,HR,80\n-1:10,HR,80\n")
    stay = read_physionet_record(record, "132539.txt")
    assert stay.record_id == "132539" and stay.descriptors == {"RecordID": 132539, "Age": 54}
    at = {(p, t.strftime("%H:%M")): v for p, t, v in zip(stay.frame.parameter, stay.frame.time, stay.frame.value)}
    assert at[("heart_rate", "00:07")] == 73 and at[("systolic_bp", "00:07")] == 147
    assert at[("consciousness", "00:07")] == 0 and at[("consciousness", "01:37")] == 2  # GCS 11 -> Voice
    assert at[("on_oxygen", "01:37")] == 1 and at[("lab:Urine", "00:07")] == 900 and at[("lab:FiO2", "01:37")] == 0.5
    assert stay.frame.loc[stay.frame.parameter == "spo2", "artefact"].tolist() == [True]  # SaO2 104 %: flagged
    assert stay.rejected == [(13, "unreadable line '01:37,HR,xx'"), (14, "unreadable line '25:99,HR,80'"),
                             (15, "unreadable line '-1:10,HR,80'")]
    with pytest.raises(IngestError, match="Time,Parameter,Value"):
        read_physionet_record("RecordID,Age\n1,2\n", "bad.txt")


def test_a_cuff_pressure_beside_the_arterial_lines_at_the_same_minute_is_kept_as_a_lab_value():
    from healthmon.ingest.devices import read_device_files
    from healthmon.ingest.physionet import read_physionet_record
    from healthmon.vitals.series import news2_over_time

    # Two pressures at one minute (record 132551 at 18:20: 138 by arterial line, 80 by cuff); NEWS2 must not pick by file order.
    record = ("Time,Parameter,Value\n00:00,RecordID,7\n18:20,SysABP,80\n18:20,DiasABP,50\n18:20,NISysABP,138\n"
              "18:20,NIDiasABP,70\n19:00,NISysABP,120\n")
    stay = read_physionet_record(record, "7.txt")
    rows = sorted(zip(stay.frame.parameter, stay.frame.time.dt.strftime("%H:%M"), stay.frame.value))
    assert rows == [("diastolic_bp", "18:20", 50), ("lab:NIDiasABP", "18:20", 70), ("lab:NISysABP", "18:20", 138),
                    ("systolic_bp", "18:20", 80), ("systolic_bp", "19:00", 120)]  # the cuff alone is the reading
    assert stay.cuff_beside_arterial == 2
    # A damped line's 0 is an artefact: the cuff's reading at that minute stays the reading.
    damped = read_physionet_record("Time,Parameter,Value\n01:00,SysABP,0\n01:00,NISysABP,118\n", "8.txt")
    assert sorted(zip(damped.frame.parameter, damped.frame.value, damped.frame.artefact)) == [
        ("systolic_bp", 0, True), ("systolic_bp", 118, False)]
    at_1820 = news2_over_time(stay.frame).set_index("time").loc[pd.Timestamp("2000-01-01 18:20", tz="UTC")]
    assert at_1820.points_systolic_bp == 3  # 80 mmHg, not the cuff's 138
    summary = read_device_files({"7.txt": record.encode()}).summary
    assert any(line.startswith("2 cuff pressure(s) at a minute the arterial line also read") for line in summary)


@pytest.mark.slow  # reads all 3,000 stays (~15 s)
def test_the_physionet_set_reads_every_record_and_its_lines(tmp_path):


    from healthmon.ingest.physionet import iter_physionet_set, read_outcomes

    folder = SHARED_DATA / "physionet2012"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    import tarfile

    with tarfile.open(folder / "set-a.tar.gz") as tar:
        files = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".txt")]
        first = files[0]
        lines = tar.extractfile(first).read().decode().splitlines()[1:]
    stays = {}
    for stay in iter_physionet_set(folder / "set-a.tar.gz"):
        stays[stay.record_id] = stay
    assert len(stays) == len(files) and not any(s.rejected for s in stays.values())
    one = stays[str(int(next(l for l in lines if ",RecordID," in l).split(",")[2]))]
    kept = [l for l in lines if not l.endswith(",-1") and l.split(",")[1] not in ("RecordID", "Age", "Gender",
                                                                                    "Height", "ICUType")]
    # FiO2, GCS and MechVent each give two rows: the mapped vital and the value as read.
    doubled = sum(1 for l in kept if l.split(",")[1] in ("FiO2", "GCS", "MechVent"))
    assert len(one.frame) == len(kept) + doubled
    outcomes = read_outcomes(folder / "Outcomes-a.txt")
    assert set(stays) <= set(outcomes["RecordID"].astype(str))


def test_vitals_become_a_short_deterministic_sentence_without_artefacts():
    from healthmon.vitals.text import summarise_vitals

    data = read_vitals_csv(CSV.encode(), "ward.csv")
    p1 = data.frame[data.frame.patient_id == "p1"]
    text = summarise_vitals(p1, news2=news2_over_time(p1, lookback="90min"))
    assert text == summarise_vitals(p1, news2=news2_over_time(p1, lookback="90min"))
    # Heart rates 72 and 128 (the 0 is an artefact): median 100, above the 51-90 range.
    assert "heart rate median 100 /min, high" in text
    assert "SpO2 median 95 %, low" in text  # the 101 % reading is left out
    assert "consciousness V at worst" in text and "on supplemental oxygen" in text and "NEWS2 max 12 (high)" in text
    assert text.endswith(".") and " 0 /min" not in text
    rising = pd.DataFrame({"patient_id": "p", "time": pd.date_range("2026-01-01", periods=6, freq="D", tz="UTC"),
                           "parameter": "heart_rate", "value": [70, 71, 72, 84, 86, 88], "artefact": False,
                           "source": "t"})
    assert summarise_vitals(rising) == "heart rate median 78 /min, normal, rising."
    # A median hides the reading that matters most: the latest is said where its band differs.
    jump = rising.assign(value=[70, 72, 71, 70, 73, 128])
    assert summarise_vitals(jump) == "heart rate median 72 /min, normal, latest 128, high."
    settled = rising.assign(value=[128, 124, 118, 72, 70, 71])
    assert summarise_vitals(settled) == "heart rate median 95 /min, high, falling, latest 71, normal."


@pytest.mark.parametrize(("spo2", "on_oxygen", "word", "news2"), [
    (83, False, "very low", 3), (84, False, "low", 2), (87, False, "low", 1), (88, False, "normal", 0),
    (92, False, "normal", 0),
    # On air NEWS2 scale 2 scores 93 % and above 0: not "high". On oxygen it scores 1-3 (97 %+ is 3),
    # and the oxygen itself 2.
    (95, False, "normal", 0), (99, False, "normal", 0), (93, True, "high", 1 + 2), (96, True, "high", 2 + 2),
    (97, True, "very high", 3 + 2),
])
def test_on_spo2_scale_2_the_summary_judges_spo2_against_the_prescribed_target(spo2, on_oxygen, word, news2):
    from healthmon.vitals.assess import assess_patient
    from healthmon.vitals.text import looks_like_vitals_summary

    times = pd.date_range("2026-01-01 08:00", periods=3, freq="h", tz="UTC")
    rows = [("spo2", spo2)] * 3 + ([("on_oxygen", 1.0)] * 3 if on_oxygen else [])
    frame = pd.DataFrame({"patient_id": "copd", "time": list(times) * (len(rows) // 3),
                          "parameter": [p for p, _ in rows], "value": [v for _, v in rows], "artefact": False,
                          "source": "t"})
    scale2 = assess_patient(frame, "copd", spo2_scale=2).summary
    assert f"SpO2 target 88-92 %; SpO2 median {spo2} %, {word}." in scale2 and looks_like_vitals_summary(scale2)
    # The NEWS2 maximum in the same sentence is on the same scale, so the two cannot disagree.
    assert scale2.startswith(f"{'on supplemental oxygen; ' if on_oxygen else ''}NEWS2 max {news2} (")
    scale1 = assess_patient(frame, "copd", spo2_scale=1).summary
    assert "target" not in scale1 and f"SpO2 median {spo2} %, " in scale1


def test_on_spo2_scale_2_the_words_follow_the_oxygen_now_and_need_an_spo2_reading():
    from healthmon.vitals.assess import assess_patient

    times = pd.date_range("2026-01-01 08:00", periods=3, freq="h", tz="UTC")
    # Oxygen for two readings, then back on air at 96 %: NEWS2 now scores the SpO2 0, so it is not "high".
    weaned = pd.DataFrame({"patient_id": "copd", "time": list(times) * 2, "artefact": False, "source": "t",
                           "parameter": ["spo2"] * 3 + ["on_oxygen"] * 3, "value": [96, 96, 96, 1.0, 1.0, 0.0]})
    result = assess_patient(weaned, "copd", spo2_scale=2)
    assert "SpO2 median 96 %, normal." in result.summary and result.latest_news2["points_spo2"] == 0
    # Without an SpO2 reading there is nothing for the target to explain.
    pulse = pd.DataFrame({"patient_id": "copd", "time": times, "parameter": "heart_rate", "value": [80, 82, 84],
                          "artefact": False, "source": "t"})
    assert "target" not in assess_patient(pulse, "copd", spo2_scale=2).summary


ICU_RECORD = """Time,Parameter,Value
00:00,RecordID,900001
00:00,Age,71
00:00,Gender,1
00:00,ICUType,3
00:00,Weight,-1
00:30,HR,118
00:30,GCS,7
00:30,MechVent,1
00:30,FiO2,0.6
01:00,Lactate,4.5
01:00,pH,7.21
02:00,Urine,150
05:00,Urine,150
06:00,HR,124
06:00,GCS,14
06:00,Lactate,5.1
06:00,pH,7.18
"""


def test_an_icu_stay_becomes_a_sentence_written_only_from_its_features():
    import re

    from healthmon.ingest.physionet import read_physionet_record
    from healthmon.vitals.text import features_text, window_features

    stay = read_physionet_record(ICU_RECORD, "900001.txt")
    features = window_features(stay.frame, descriptors=stay.descriptors, news2=news2_over_time(stay.frame))
    assert features["age"] == 71 and features["female"] == 0 and features["ventilated"] == 1
    assert features["lab:GCS.min"] == 7 and features["lab:GCS.latest"] == 14 and features["lab:pH.min"] == 7.18
    # Urine readings are volumes since the one before: 150 mL over the 3 h from 02:00 to 05:00.
    assert features["lab:Urine.rate"] == 50
    text = features_text(features)
    assert text.startswith("age 71, older, male; medical ICU; mechanically ventilated; NEWS2 max")
    for phrase in ("heart rate median 121 /min, high",
                   "GCS lowest 7, very low, latest 14, low",  # sedated, then waking: both are news
                   "urine output 50 mL/h, normal",
                   "lactate highest 5.1, very high; ",  # the latest is the highest: said once
                   "pH lowest 7.18, very low; ", "FiO2 highest 0.6, high", "consciousness P at worst"):
        assert phrase in text
    # Every number in the sentence is one of the features (or the NEWS2 band wording).
    numbers = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}
    assert numbers <= {round(v, 2) for v in features.values()} | {0.0, 2.0}  # "SpO2", "PaO2" digits
    assert window_features(stay.frame.iloc[:0]) == {} and features_text({}) == "no usable vitals."


BAND_CASES = {
    # NEWS2's 3-point bands are "very": heart rate <= 40 and >= 131, SpO2 <= 91, temperature <= 35.0.
    ("heart_rate", "median"): [(40, "very low"), (41, "low"), (51, "normal"), (90, "normal"), (91, "high"),
                               (130, "high"), (131, "very high")],
    ("spo2", "median"): [(91, "very low"), (92, "low"), (96, "normal")],
    ("temperature", "median"): [(35.0, "very low"), (35.1, "low"), (39.0, "high"), (39.1, "very high")],
    # ACC/AHA crisis above 180 systolic; ADA level-2 hypoglycaemia below 54 mg/dL, treatment from 180.
    ("systolic_bp", "median"): [(90, "very low"), (180, "high"), (181, "very high")],
    ("glucose", "median"): [(53, "very low"), (54, "low"), (179, "high"), (180, "very high")],
    # GCS <= 8 is severe; lactate from 4 mmol/L; SAPS II's top bands (BUN >= 84, bilirubin >= 6); SOFA 3 points.
    ("lab:GCS", "min"): [(8, "very low"), (9, "low"), (15, "normal")],
    ("lab:Lactate", "max"): [(3.9, "high"), (4.0, "very high")],
    ("lab:BUN", "max"): [(83, "high"), (84, "very high")],
    ("lab:Bilirubin", "max"): [(5.9, "high"), (6.0, "very high")],
    ("lab:Creatinine", "max"): [(3.4, "high"), (3.5, "very high")],
    ("lab:Platelets", "min"): [(49, "very low"), (50, "low")],
    ("lab:pH", "min"): [(7.19, "very low"), (7.2, "low")],
    # KDIGO oliguria for a 70 kg adult: below 0.5 (35 mL/h) and 0.3 mL/kg/h (21 mL/h).
    ("lab:Urine", "rate"): [(20, "very low"), (21, "low"), (34, "low"), (35, "normal")],
}


@pytest.mark.parametrize(("parameter", "statistic", "value", "word"), [
    (parameter, statistic, value, word) for (parameter, statistic), cases in BAND_CASES.items() for value, word in cases
])
def test_each_value_gets_the_band_word_of_its_printed_value(parameter, statistic, value, word):
    from healthmon.vitals.text import MEASURES, features_text

    text = features_text({f"{parameter}.{statistic}": value})
    measure = next(m for m in MEASURES if m.parameter == parameter and m.statistic == statistic)
    assert text.startswith(measure.words) and text.endswith(f", {word}."), text


def test_the_latest_gcs_is_always_said_other_labs_only_when_their_band_changed():
    from healthmon.vitals.text import features_text

    # Still comatose and waking within the "very low" band are different patients.
    assert features_text({"lab:GCS.min": 3, "lab:GCS.latest": 3}) == "GCS lowest 3, very low, latest 3, very low."
    assert features_text({"lab:GCS.min": 3, "lab:GCS.latest": 8}) == "GCS lowest 3, very low, latest 8, very low."
    # Another lab's latest value in the worst value's band is left out to keep summaries short.
    assert features_text({"lab:Lactate.max": 6.1, "lab:Lactate.latest": 4.2}) == "lactate highest 6.1, very high."
    assert features_text({"lab:Lactate.max": 6.1, "lab:Lactate.latest": 1.5}) == (
        "lactate highest 6.1, very high, latest 1.5, normal.")


def test_white_cells_say_their_highest_and_their_lowest_only_where_it_is_low():
    from healthmon.vitals.text import features_text, window_features

    def white_cells(counts: list[float]) -> pd.DataFrame:
        times = pd.date_range("2026-01-01", periods=len(counts), freq="6h", tz="UTC")
        return pd.DataFrame({"patient_id": "p", "time": times, "parameter": "lab:WBC", "value": counts,
                             "artefact": False, "source": "t"})

    # Leukopenia (SIRS: < 4) was hidden behind a normal maximum; SAPS II's worst band is < 1.
    assert features_text(window_features(white_cells([6.5, 2.1, 3.0]))) == (
        "white cells highest 6.5, normal, latest 3, low; white cells lowest 2.1, low.")
    assert features_text(window_features(white_cells([5, 0.8]))) == (
        "white cells highest 5, normal, latest 0.8, very low; white cells lowest 0.8, very low.")
    # One count is judged alike in both phrases: never "normal" in one and "low" in the other.
    assert features_text(window_features(white_cells([14.2, 2]))) == (
        "white cells highest 14.2, high, latest 2, low; white cells lowest 2, low.")
    assert features_text(window_features(white_cells([3.5, 2]))) == (
        "white cells highest 3.5, low; white cells lowest 2, low.")
    # A normal lowest is not said: the highest (and its latest where the band changed) is enough.
    assert features_text(window_features(white_cells([14.2, 9]))) == (
        "white cells highest 14.2, high, latest 9, normal.")


def test_urine_output_is_a_rate_over_the_hours_its_readings_cover():
    from healthmon.vitals.text import window_features

    def urine(times: list[str], volumes: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"patient_id": "p", "time": pd.to_datetime(times, utc=True), "parameter": "lab:Urine",
                             "value": volumes, "artefact": False, "source": "t"})

    # The first reading's interval is unknown, so the rate is the rest over the hours they cover:
    # the same 120 mL/h whether the window is 6 h or 48 h long.
    six_hours = urine([f"2026-01-01 {h:02d}:00" for h in range(0, 7)], [500] + [120] * 6)
    two_days = urine(pd.date_range("2026-01-01", periods=49, freq="h").astype(str).tolist(), [500] + [120] * 48)
    assert window_features(six_hours)["lab:Urine.rate"] == window_features(two_days)["lab:Urine.rate"] == 120
    assert "lab:Urine.rate" not in window_features(urine(["2026-01-01 00:00"], [300]))  # one reading: no rate
    # Readings at the first time share its unknown interval; the input's order does not matter.
    same_start = urine(["2026-01-01 03:00", "2026-01-01 02:00", "2026-01-01 02:00"], [50, 100, 100])
    assert window_features(same_start)["lab:Urine.rate"] == 50


def test_a_version_trained_without_vitals_summaries_is_told_apart(tmp_path):
    """The Vitals page warns when the served model never saw a summary (the demo model)."""
    import json

    from healthmon.demo import generate_demo_notes
    from healthmon.demo import synthetic_vitals_notes
    from healthmon.vitals.text import looks_like_vitals_summary, summaries_in_training_data

    summaries = [note.text for note in synthetic_vitals_notes(20, seed=3)] + [
        "urine output 30 mL/h, low.", "age 70, older, male; GCS lowest 3, very low.", "no usable vitals."]
    notes = [note.text for note in generate_demo_notes(40, seed=3)]
    assert all(looks_like_vitals_summary(text) for text in summaries)
    assert not any(looks_like_vitals_summary(text) for text in notes)
    for note in ("Heart rate 88, BP 150/95 today; heart rate 92 later; glucose 130.",
                 "Overnight: oliguric; urine output 25 mL/h; potassium highest 5.9, repleted per protocol.",
                 "potassium highest 5.9; plan repeat BMP in the morning.",
                 "urine output total 900 mL since midnight; creatinine highest 2.1, rising."):
        assert not looks_like_vitals_summary(note), note
    for summary in ("heart rate median 78 /min, normal, rising.", "age 70, older, male; medical ICU.",
                    "on supplemental oxygen; NEWS2 max 3 (low, partial); consciousness V at worst.",
                    # The ICU sentence as written until 2026-11-28 (ranges, urine output as a total):
                    # versions trained on it did see summaries.
                    "age 54, female; surgical ICU; NEWS2 max 5 (medium, partial); consciousness C at worst; "
                    "heart rate median 73 /min (58-86), normal, rising; GCS lowest 14, low; "
                    "urine output total 6500 mL, normal; potassium highest 4.4, normal."):
        assert looks_like_vitals_summary(summary), summary

    from healthmon.model.card import ModelCard

    def version(folder, texts, parent=""):  # noqa: ANN001, ANN202
        folder.mkdir(parents=True)
        ModelCard(labels=("none", "x"), problem_type="single_label_classification", base_model="b",
                  weights_format="lora", max_length=64, window_stride=32, parent_version=parent).save(folder)
        if texts is not None:
            (folder / "data").mkdir()
            (folder / "data" / "train.jsonl").write_text(
                "".join(json.dumps({"text": t, "labels": ["none"]}) + "\n" for t in texts), encoding="utf-8")
        return folder

    assert summaries_in_training_data(version(tmp_path / "unstored", None)) is None  # not stored: unknown
    assert summaries_in_training_data(version(tmp_path / "notes-only", notes)) == 0
    assert summaries_in_training_data(version(tmp_path / "mixed", notes + summaries[:5])) == 5

    # A retrained version starts from its parent's weights: the parent's summaries count too,
    # and an unreadable training file makes the answer unknown rather than a crash.
    root = version(tmp_path / "root", notes[:5] + summaries[:3])
    child = version(tmp_path / "child", notes[5:9], parent=str(root))
    assert summaries_in_training_data(child) == 3
    (root / "data" / "train.jsonl").write_text("{not json\n", encoding="utf-8")
    assert summaries_in_training_data(child) is None


def test_the_format_is_recognised_from_the_contents_and_mixed_uploads_are_refused():
    from healthmon.ingest.devices import detect_format, read_device_files

    assert detect_format("ward.csv", b"timestamp,hr\n") == "csv"
    assert detect_format("132539.txt", b"Time,Parameter,Value\n00:00,RecordID,1") == "physionet"
    assert detect_format("dailyActivity_merged (1).csv", b"Id,ActivityDate") == "fitbit"
    assert detect_format("hourlySteps_merged.csv", b"Id,ActivityHour,StepTotal") == "fitbit"  # refused there, by name
    assert detect_format("vitals_merged.csv", b"timestamp,hr\n") == "csv"  # not Fitbit's: no Id column
    assert detect_format("export.ndjson", b'{"resourceType":"Patient"}') == "fhir"
    assert detect_format("bundle.txt", b'\xef\xbb\xbf  {"resourceType":"Bundle"') == "fhir"
    with pytest.raises(IngestError, match="files of one format per upload") as refused:
        read_device_files({"ward.csv": CSV.encode(), "stay.txt": ICU_RECORD.encode()})
    assert "ward.csv: generic vitals CSV" in str(refused.value) and "upload each format on its own" in str(refused.value)
    with pytest.raises(IngestError, match="at least one device file"):
        read_device_files({})


def test_same_named_files_and_a_csv_without_patients_are_never_merged_silently():
    from healthmon.ingest.devices import read_device_files

    alice, bob = b"time,hr\n2026-03-01 08:00,60\n", b"time,hr\n2026-03-01 08:00,110\n"
    with pytest.raises(IngestError, match="export.csv more than once"):
        read_device_files([("export.csv", alice), ("export.csv", bob)])
    with pytest.raises(IngestError, match="are the same kind"):
        read_device_files([("dailyActivity_merged.csv", b"Id,ActivityDate,TotalSteps\n1,4/12/2016,8\n"),
                           ("dailyActivity_merged (1).csv", b"Id,ActivityDate,TotalSteps\n1,4/13/2016,9\n")])
    unnamed = read_device_files({"export.csv": alice})
    assert unnamed.needs_patient_id and any("give the patient id" in line for line in unnamed.summary)
    named = read_device_files({"export.csv": alice}, patient_id="alice")
    assert not named.needs_patient_id and set(named.frame["patient_id"]) == {"alice"}


def test_each_format_reads_through_the_one_entry_point_with_its_report():
    from healthmon.ingest.devices import read_device_files

    csv = read_device_files({"ward.csv": CSV.encode()})
    assert csv.fmt == "csv" and "Read 5 row(s) of ward.csv" in csv.summary[0]
    assert csv.rejected == [("ward.csv line 4", "unreadable time 'not a time'")]
    icu = read_device_files({"900001.txt": ICU_RECORD.encode()})
    assert icu.fmt == "physionet" and icu.descriptors["900001"]["Age"] == 71
    assert any("SaO2" in line for line in icu.summary)  # the approximations are stated
    fitbit = read_device_files({
        "dailyActivity_merged.csv": b"Id,ActivityDate,TotalSteps\n1,4/12/2016,8000\n1,4/13/2016,oops\n",
        "hourlySteps_merged.csv": b"Id,ActivityHour,StepTotal\n1,4/12/2016 1:00:00 AM,10\n"})
    assert fitbit.fmt == "fitbit" and len(fitbit.frame) == 1 and len(fitbit.rejected) == 1
    assert any("Not read" in line and "hourlySteps_merged.csv" in line for line in fitbit.summary)


def test_the_shared_device_folders_read_through_the_entry_point():
    from healthmon.ingest.devices import read_device_paths

    if not (SHARED_DATA / "fitbit").is_dir():
        pytest.skip(f"{SHARED_DATA} not present: the real device files are read from there")
    fitbit = read_device_paths([SHARED_DATA / "fitbit"])
    assert fitbit.fmt == "fitbit" and fitbit.frame["patient_id"].nunique() == 33
    bundles = read_device_paths([SHARED_DATA / "fhir-synthea-bundles"])
    assert bundles.fmt == "fhir" and bundles.frame["patient_id"].nunique() == 6
    bulk = read_device_paths([SHARED_DATA / "fhir-bulk-10patients"])  # its log.ndjson is left out
    assert bulk.frame.empty and len(bulk.notes.notes) == 1215 and len(bulk.conditions) == 555


def test_one_patient_assessment_pairs_bp_lists_swapped_pairs_and_merges_alerts():
    from healthmon.vitals.assess import assess_patient

    rows = "".join(f"2026-03-0{d} 08:00,p1,{hr},{bp}\n" for d, hr, bp in
                   [(1, 70, "150/95"), (2, 71, "152/96"), (3, 70, "80/120"), (4, 72, "148/94"), (5, 70, "151/97"),
                    (6, 71, "149/95"), (7, 130, "150/96")])
    data = read_vitals_csv(("timestamp,patient,hr,bp\n" + rows).encode(), "home.csv")
    result = assess_patient(data.frame, "p1", setting="home")
    assert result.bp.readings == 6 and result.bp.category == "stage 2 hypertension" and result.bp.setting == "home"
    assert result.bp_crisis == () and result.bp_esc is None  # office grades are not applied to home readings
    assert "left out (diastolic not below systolic): 2026-03-03 08:00 UTC 80/120" in result.bp_note
    kinds = set(zip(result.alerts["rule_id"], result.alerts["parameter"]))
    assert ("hr_jump", "heart_rate") in kinds
    jump = result.alerts[result.alerts.rule_id == "hr_jump"].iloc[0]
    assert jump["readings"] == ((pd.Timestamp("2026-03-07 08:00", tz="UTC"), 130.0),)
    assert result.summary.startswith("NEWS2 max") and "heart rate median 71 /min" in result.summary


def test_the_vitals_chart_marks_alert_readings_and_escapes_their_text():
    from healthmon.figures import vitals_figure
    from healthmon.vitals.assess import assess_patient

    rows = "".join(f"2026-03-01 {h:02d}:00,p1,{hr}\n" for h, hr in enumerate([70, 72, 71, 70, 73, 72, 140]))
    data = read_vitals_csv(("timestamp,patient,hr\n" + rows).encode(), "ward.csv")
    result = assess_patient(data.frame, "p1")
    figure = vitals_figure(result.vitals, result.news2, result.alerts)
    markers = [t for t in figure.data if t.name and t.name.startswith("alert: ")]
    # The jump sits on the heart-rate line; the red flag it causes (3 NEWS2 points) on the NEWS2 bars.
    assert {t.name: list(t.y) for t in markers} == {"alert: hr_jump": [140], "alert: news2_red_flag": [3]}
    # The patient's own usual value (the median of the readings before, from the third one on).
    usual = [t for t in figure.data if t.name == "usual (28-day median)"]
    assert len(usual) == 1 and list(usual[0].y) == [71.0, 70.5, 71.0, 71.5]  # before 03:00 ... 06:00
    assert figure.layout.xaxis2.title.text == "time (UTC)"  # the bottom panel's axis, shared by all
    assert [a.text for a in figure.layout.annotations][-1] == "NEWS2 (aggregate)"
    at_home = vitals_figure(result.vitals, result.news2, setting="home")
    assert [a.text for a in at_home.layout.annotations][-1] == "NEWS2 (aggregate; a ward score applied at home)"
    from healthmon.vitals.assess import mark_cuffless

    bp = read_vitals_csv(b"timestamp,patient,bp\n2026-03-01 08:00,p1,130/80\n", "w.csv").frame
    titles = [a.text for a in vitals_figure(mark_cuffless(bp), bp.iloc[:0]).layout.annotations]
    assert titles == ["systolic BP mmHg (cuffless estimates: trend only)", "diastolic BP mmHg (cuffless estimates: trend only)"]
    hostile = result.alerts.assign(message="<b>x</b>")
    escaped = vitals_figure(result.vitals, result.news2, hostile)
    assert [t.hovertext for t in escaped.data if t.name == "alert: hr_jump"] == ["&lt;b&gt;x&lt;/b&gt;"]


def test_a_dense_record_is_drawn_as_lines_and_news2_over_its_bands(monkeypatch):
    """Past figures.DENSE points a marker per reading and a bar per NEWS2 time point are too many
    for the browser to draw; the same readings are drawn as lines, NEWS2 over its bands."""
    from healthmon import figures
    from healthmon.vitals.assess import assess_patient

    rows = "".join(f"2026-03-01 {h:02d}:00,p1,{hr},{hr}\n" for h, hr in enumerate([70, 72, 71, 70, 73, 72, 140]))
    data = read_vitals_csv(("timestamp,patient,hr,resp\n" + rows).encode(), "ward.csv")
    result = assess_patient(data.frame, "p1")

    def drawn(figure):
        return {t.name: (t.type, getattr(t, "mode", None)) for t in figure.data if t.name in ("heart_rate", "NEWS2")}

    sparse = figures.vitals_figure(result.vitals, result.news2, result.alerts)
    assert drawn(sparse) == {"heart_rate": ("scatter", "lines+markers"), "NEWS2": ("bar", None)}
    monkeypatch.setattr(figures, "DENSE", 6)  # 7 readings and 7 NEWS2 time points: dense
    dense = figures.vitals_figure(result.vitals, result.news2, result.alerts)
    assert drawn(dense) == {"heart_rate": ("scatter", "lines"), "NEWS2": ("scatter", "lines")}
    (line,) = [t for t in dense.data if t.name == "NEWS2"]
    assert list(line.y) == list(result.news2["total"]) and line.line.shape == "hv"
    assert line.customdata[-1][0] == result.news2["band"].iloc[-1]  # the band still in the hover
    news2_panel = len(dense.layout.annotations)  # the last of the titled panels
    zones = {(s.y0, s.fillcolor) for s in dense.layout.shapes if s.yref == f"y{news2_panel}"}
    assert {(0, "#27ae60"), (4.5, "#e67e22"), (6.5, figures.ALERT)} == zones
    # The readings behind the alerts keep their own markers.
    assert [list(t.y) for t in dense.data if t.name == "alert: hr_jump"] == [[140]]
    # Many cuffless estimates beside a few cuff readings: the cuff's, the ones scored, keep their markers.
    from healthmon.vitals.assess import mark_cuffless

    watch = mark_cuffless(read_vitals_csv(("timestamp,patient,bp\n" + "".join(
        f"2026-03-01 {h:02d}:00,p1,{120 + h}/80\n" for h in range(8))).encode(), "watch.csv").frame)
    cuff = read_vitals_csv(b"timestamp,patient,bp\n2026-03-01 09:30,p1,150/95\n", "cuff.csv").frame
    mixed = figures.vitals_figure(pd.concat([watch, cuff], ignore_index=True), result.news2.iloc[:0])
    modes = {t.name: t.mode for t in mixed.data if t.yaxis == "y" and t.name != figures.BASELINE_NAME}  # systolic
    assert modes == {"systolic_bp": "lines+markers", "cuffless estimate (trend only)": "lines"}
    # Without markers, a line across a night the watch was off would look like readings: it breaks.
    minutes = [f"2026-03-01 08:{m:02d},p1,{70 + m % 3}\n" for m in range(10)]
    evening = [f"2026-03-01 20:{m:02d},p1,{72 + m % 3}\n" for m in range(10)]
    night = ["2026-03-01 23:30,p1,64\n"]  # one reading alone between two gaps: a line cannot show it
    watched = read_vitals_csv(("timestamp,patient,hr\n" + "".join(minutes + evening + night)).encode(), "watch.csv")
    day = assess_patient(watched.frame, "p1", setting="home")
    traces = {t.name: t for t in figures.vitals_figure(day.vitals, day.news2).data}
    for name in ("heart_rate", "NEWS2"):
        assert [i for i, y in enumerate(traces[name].y) if pd.isna(y)] == [10, 21]  # after 08:09 and 20:09
        assert list(traces[f"{name} (between gaps)"].y) == [64 if name == "heart_rate" else 0]
    assert len(traces["NEWS2"].customdata) == len(traces["NEWS2"].y)
    assert traces["NEWS2"].customdata[11][0] == "low" and list(traces["NEWS2"].customdata[10]) == ["", ""]


def test_on_spo2_scale_2_the_chart_draws_the_prescribed_target_not_96_to_100():
    from healthmon.figures import vitals_figure
    from healthmon.vitals.assess import assess_patient

    rows = "".join(f"2026-03-01 {h:02d}:00,p1,{s}\n" for h, s in enumerate([90, 91, 88, 89]))
    data = read_vitals_csv(("timestamp,patient,spo2\n" + rows).encode(), "copd.csv")
    result = assess_patient(data.frame, "p1", spo2_scale=2)

    def spo2_band(figure):
        (shape,) = [s for s in figure.layout.shapes if s.type == "rect"]  # SpO2 is the only vital here
        return shape.y0, shape.y1

    assert spo2_band(vitals_figure(result.vitals, result.news2, spo2_scale=2)) == (88, 92)
    assert spo2_band(vitals_figure(result.vitals, result.news2)) == (96, 100)
    # 89 % is inside the scale-2 band and scores 0 there; on scale 1 it scores 3 points.
    assert result.latest_news2["value_spo2"] == 89 and result.latest_news2["points_spo2"] == 0
    assert assess_patient(data.frame, "p1").latest_news2["points_spo2"] == 3


def test_one_crisis_reading_is_named_even_when_the_weeks_mean_is_normal():
    from healthmon.vitals.assess import assess_patient

    rows = "".join(f"2026-03-0{d} 08:00,p1,120/78\n" for d in range(1, 7)) + "2026-03-07 08:00,p1,212/132\n"
    data = read_vitals_csv(("timestamp,patient,bp\n" + rows).encode(), "home.csv")
    result = assess_patient(data.frame, "p1", setting="hospital")
    assert not result.bp.crisis and result.bp.systolic < 140  # the mean alone would hide it
    assert result.bp_crisis == ("2026-03-07 08:00 212/132 mmHg",)
    assert result.bp_esc == "high normal"  # ESC/ESH grade of the mean, 133/86 (130-139 or 85-89)


def test_cuffless_estimates_are_never_staged_scored_or_summarised_and_an_old_cuff_reading_does_not_hide_them():
    from healthmon.vitals.assess import assess_patient, mark_cuffless
    from healthmon.vitals.bp import CUFFLESS

    cuff = read_vitals_csv(b"timestamp,patient,bp\n2025-06-01 08:00,p1,118/76\n", "cuff.csv").frame
    watch = mark_cuffless(read_vitals_csv(b"timestamp,patient,bp,hr\n2026-03-01 08:00,p1,205/130,80\n"
                                          b"2026-03-02 08:00,p1,200/125,82\n", "watch.csv").frame)
    # A cuff reading nine months old does not stand in for this week's estimates.
    result = assess_patient(pd.concat([cuff, watch], ignore_index=True), "p1")
    assert result.bp.category == CUFFLESS and result.bp.cuffless and result.bp_crisis == ()
    assert result.crisis_estimates == ("2026-03-01 08:00 205/130 mmHg", "2026-03-02 08:00 200/125 mmHg")
    this_year = result.news2[result.news2["time"] >= pd.Timestamp("2026-01-01", tz="UTC")]
    assert len(this_year) == 2 and this_year["points_systolic_bp"].isna().all()  # no NEWS2 points from an estimate
    assert "systolic" not in result.summary and "heart rate" in result.summary  # the sentence reads measurements
    # A normal cuff reading the day before an estimate in the crisis range: the cuff is staged,
    # the estimate still named for a cuff reading.
    recent = read_vitals_csv(b"timestamp,patient,bp\n2026-03-01 20:00,p1,118/76\n", "cuff.csv").frame
    both = assess_patient(pd.concat([recent, watch], ignore_index=True), "p1")
    assert (both.bp.category, both.bp.cuffless, both.bp.readings) == ("normal", False, 1)
    assert both.crisis_estimates == ("2026-03-01 08:00 205/130 mmHg", "2026-03-02 08:00 200/125 mmHg")


def test_a_jump_in_cuffless_estimates_is_alerted_as_a_trend_to_confirm_and_a_cuffs_jump_as_measured():
    from healthmon.vitals.assess import ESTIMATES_SAID, assess_patient, mark_cuffless

    rows = "".join(f"2026-03-01 {h:02d}:00,p1,{s}/80\n" for h, s in enumerate([120, 122, 119, 121, 120, 118, 165]))
    readings = read_vitals_csv(("timestamp,patient,bp\n" + rows).encode(), "bp.csv").frame
    (estimated,) = assess_patient(mark_cuffless(readings), "p1").alerts["message"]
    (measured,) = assess_patient(readings, "p1").alerts["message"]
    assert estimated == measured + ESTIMATES_SAID and measured.startswith("Systolic BP 165 mmHg at 2026-03-01 06:00")
    # A cuff reading is not judged against a median of estimates, nor the reverse: two kinds of measurement.
    cuff = read_vitals_csv(b"timestamp,patient,bp\n2026-03-01 07:00,p1,165/80\n", "cuff.csv").frame
    mixed = assess_patient(pd.concat([mark_cuffless(readings.iloc[:-2]), cuff], ignore_index=True), "p1")
    assert "sbp_jump" not in set(mixed.alerts["rule_id"])


def test_a_time_read_as_a_negative_year_is_a_rejected_row_not_a_crash():
    from healthmon.ingest.vitals_csv import read_vitals_csv

    data = read_vitals_csv("time,patient,sbp\n-5,p,120\n2026-12-01 10:00,p,130\n")
    assert data.report.rejected == [(2, "time '-5' reads as -5-01-01 00:00, not a date between 1990 and tomorrow: "
                                        "write the full date and time")]
    assert list(data.frame["value"]) == [130.0]


def test_a_fitbit_row_with_more_cells_than_the_header_is_rejected_by_line():
    from healthmon.ingest.fitbit import read_fitbit_files

    data = read_fitbit_files({"dailyActivity_merged.csv": b"Id,ActivityDate,TotalSteps\n"
                                                          b"x1,4/12/2016,100,extra\nabc,4/13/2016,200\n"})
    assert data.report.rejected == [(2, "dailyActivity_merged.csv: 4 cells where the header has 3")]
    assert data.report.rows_read == 2 and list(data.frame["value"]) == [200.0]
