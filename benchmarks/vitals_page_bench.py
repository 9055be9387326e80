"""What a week and a month of a wearable's minute readings cost the Vitals page: reading the
CSV, scoring (NEWS2 at every time point, blood pressure, trend alerts), building the chart, and
the browser drawing it.

A wearable exports a reading a minute: 10,080 rows a week, 43,200 a month. Every click on the
page reruns it (the page keeps the scores and the chart for the same readings and choices, so
this is the cost of the first look and of each new choice), and every zoom redraws the chart.

Anchors, measured in the same run on the same data:
  * reading: ``pandas.read_csv`` of the same bytes (the C parser alone: no aliases, units,
    artefact flags or per-row report), so the figure is the reader's overhead over it;
  * drawing: the same chart drawn the way it was before dense records were drawn as lines (a
    marker per reading and a bar per NEWS2 time point), in the same headless Chromium.

    python benchmarks/vitals_page_bench.py                  # a week and a month
    python benchmarks/vitals_page_bench.py --days 30 --no-browser
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def wearable_csv(days: int, seed: int = 0) -> bytes:
    """A watch's export: heart rate, SpO2 and steps each minute, a cuff reading four times a day.
    Heart rate follows the day (lower at night) with a slow drift and noise, and rises during
    walks of 10-30 minutes at about 100 steps a minute, so the trend rules see something like a
    person rather than white noise."""
    import pandas as pd

    chooser = random.Random(seed)
    start = pd.Timestamp("2026-11-01")
    lines = ["timestamp,pulse,spo2,sbp,dbp,steps"]
    drift, walk_left = 0.0, 0
    for minute in range(days * 1440):
        hour = (minute // 60) % 24
        drift = 0.995 * drift + chooser.gauss(0, 0.2)
        if not walk_left and 8 <= hour < 20 and chooser.random() < 0.005:
            walk_left = chooser.randint(10, 30)
        walking, walk_left = walk_left > 0, max(0, walk_left - 1)
        pulse = 66 + 6 * math.sin((hour - 10) / 24 * 2 * math.pi) + drift + chooser.gauss(0, 2) + (30 if walking else 0)
        spo2 = min(100, round(97 + chooser.gauss(0, 0.7)))
        cuff = (f"{round(122 + chooser.gauss(0, 6))},{round(78 + chooser.gauss(0, 4))}" if minute % 360 == 0 else ",")
        steps = chooser.randint(90, 120) if walking else 0
        lines.append(f"{start + pd.Timedelta(minutes=minute):%Y-%m-%d %H:%M},{pulse:.0f},{spo2},{cuff},{steps}")
    return ("\n".join(lines) + "\n").encode()


def timed(work):  # noqa: ANN001, ANN201 - a callable and what it returns
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def as_drawn_before(figure_json: str) -> str:
    """The chart as it was drawn before: a marker per reading, a bar per NEWS2 time point."""
    from healthmon.figures import BASELINE_NAME

    figure = json.loads(figure_json)
    for trace in figure["data"]:
        if trace.get("type") == "scatter" and trace.get("mode") == "lines" and trace.get("name") not in (
                None, BASELINE_NAME):
            if trace["name"] == "NEWS2":
                trace["type"] = "bar"
                del trace["mode"], trace["line"]
            else:
                trace["mode"] = "lines+markers"
    figure["layout"]["shapes"] = [s for s in figure["layout"].get("shapes", []) if s.get("opacity") != 0.12
                                  or s.get("yref") != f"y{len(figure['layout']['annotations'])}"]
    return json.dumps(figure)


def draw_seconds(page, figure_json: str) -> tuple[float, float]:  # noqa: ANN001 - a Playwright page
    """Seconds for Plotly to draw the figure, and to redraw it zoomed to one day."""
    drawn = page.evaluate("""async (text) => { Plotly.purge('chart'); const figure = JSON.parse(text);
        const t0 = performance.now(); await Plotly.newPlot('chart', figure.data, figure.layout);
        return performance.now() - t0; }""", figure_json)
    zoomed = page.evaluate("""async () => { const t0 = performance.now();
        await Plotly.relayout('chart', {'xaxis.range': ['2026-11-03', '2026-11-04']});
        return performance.now() - t0; }""")
    return drawn / 1000, zoomed / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[7, 30])
    parser.add_argument("--no-browser", action="store_true", help="time the Python side only")
    args = parser.parse_args()

    import pandas as pd
    import plotly

    from healthmon.figures import vitals_figure
    from healthmon.vitals.assess import assess_patient
    from healthmon.ingest.vitals_csv import read_vitals_csv

    browser_page = playwright = None
    if args.no_browser:
        print("browser: not timed (--no-browser)")
    elif not CHROMIUM.exists():
        print(f"browser: not timed ({CHROMIUM} missing: apt-get install chromium)")
    else:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        browser_page = browser.new_page()
        browser_page.set_content("<div id='chart' style='width:1200px'></div>")
        browser_page.add_script_tag(path=str(Path(plotly.__file__).parent / "package_data" / "plotly.min.js"))
    try:
        for days in args.days:
            data = wearable_csv(days)
            _, anchor_s = timed(lambda: pd.read_csv(io.BytesIO(data)))
            read, read_s = timed(lambda: read_vitals_csv(data, "watch.csv", patient_id="P1"))
            result, assess_s = timed(lambda: assess_patient(read.frame, "P1", setting="home"))
            figure, figure_s = timed(lambda: vitals_figure(result.vitals, result.news2, result.alerts, setting="home"))
            figure_json = figure.to_json()
            rows = days * 1440
            print(f"{days} days, {rows:,} rows, {len(read.frame):,} values, {len(result.alerts)} alerts:")
            print(f"  read {read_s:.2f} s (anchor: pandas.read_csv {anchor_s:.3f} s; x{read_s / anchor_s:.0f}), "
                  f"score {assess_s:.2f} s, chart {figure_s:.2f} s; "
                  f"first look {read_s + assess_s + figure_s:.2f} s; chart JSON {len(figure_json) / 1e6:.1f} MB")
            if browser_page is not None:
                draw_s, zoom_s = draw_seconds(browser_page, figure_json)
                before_s, before_zoom_s = draw_seconds(browser_page, as_drawn_before(figure_json))
                print(f"  browser: draw {draw_s:.2f} s, zoom to a day {zoom_s:.2f} s (anchor, a marker per reading "
                      f"and a bar per NEWS2 point: draw {before_s:.2f} s, zoom {before_zoom_s:.2f} s; "
                      f"x{before_s / draw_s:.0f} faster)")
    finally:
        if playwright is not None:
            playwright.stop()


if __name__ == "__main__":
    main()
