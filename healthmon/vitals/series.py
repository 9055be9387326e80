"""NEWS2 over time: at each time point, the latest value of each parameter within a look-back window."""

from __future__ import annotations

import math

import pandas as pd

from healthmon.vitals.news2 import score_news2

NEWS2_PARAMETERS = ("respiration_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "consciousness", "temperature")


def news2_over_time(vitals: pd.DataFrame, *, lookback: str | pd.Timedelta = "4h", spo2_scale: int = 1,
                    setting: str = "hospital") -> pd.DataFrame:
    """One NEWS2 per patient and time point of ``vitals`` (the long table of ``read_vitals_csv``).

    Each parameter contributes its most recent non-artefact value from the ``lookback``
    window ending at that time point (observations are rarely all taken at once); older
    values count as not measured. Columns: patient_id, time, total, band, red_flag,
    complete, missing, caveat, one ``points_<parameter>`` column per parameter and one
    ``value_<parameter>`` column with the reading that scored it.
    """
    window = pd.Timedelta(lookback)
    clean = vitals[~vitals["artefact"] & vitals["parameter"].isin(NEWS2_PARAMETERS)].dropna(subset=["value"])
    moments = clean[["patient_id", "time"]].drop_duplicates().sort_values("time", kind="stable").reset_index(drop=True)
    if moments.empty:
        return pd.DataFrame(columns=["patient_id", "time", "total", "band", "red_flag", "complete", "missing", "caveat"])
    latest = moments
    for parameter in NEWS2_PARAMETERS:
        series = (clean[clean["parameter"] == parameter][["patient_id", "time", "value"]]
                  .sort_values("time", kind="stable").rename(columns={"value": parameter}))
        latest = pd.merge_asof(latest.sort_values("time", kind="stable"), series, on="time", by="patient_id",
                               direction="backward", tolerance=window)
    rows = []
    for record in latest.to_dict("records"):
        value = {p: (None if record.get(p) is None or (isinstance(record.get(p), float) and math.isnan(record[p]))
                     else record[p]) for p in NEWS2_PARAMETERS}
        score = score_news2(
            respiration_rate=value["respiration_rate"], spo2=value["spo2"],
            on_oxygen=None if value["on_oxygen"] is None else bool(value["on_oxygen"]),
            systolic_bp=value["systolic_bp"], heart_rate=value["heart_rate"],
            consciousness=None if value["consciousness"] is None else "ACVPU"[int(value["consciousness"])],
            temperature=value["temperature"], spo2_scale=spo2_scale, setting=setting,
        )
        rows.append({"patient_id": record["patient_id"], "time": record["time"], "total": score.total,
                     "band": score.band, "red_flag": score.red_flag, "complete": score.complete,
                     "missing": ", ".join(score.missing), "caveat": score.caveat,
                     **{f"points_{p}": score.points.get(p) for p in ("respiration_rate", "spo2", "air_or_oxygen",
                                                                      "systolic_bp", "heart_rate", "consciousness",
                                                                      "temperature")},
                     # The readings behind the points, so an alert can name them.
                     **{f"value_{p}": value[p] for p in NEWS2_PARAMETERS}})
    return pd.DataFrame(rows).sort_values(["patient_id", "time"], kind="stable").reset_index(drop=True)


def news2_points(row: dict) -> dict[str, float]:
    """One NEWS2 row's points by parameter name ("heart rate": 2), in chart order; NaN where not measured."""
    return {column.removeprefix("points_").replace("_", " "): row[column] for column in row if column.startswith("points_")}
