"""The explorer page in a real browser (Debian's chromium + chromedriver, driven by selenium), from a file:// URL:
no console errors, nothing fetched over the network, the heatmap of the chosen group, the group switch, the advisor
against analysis.advise, the CSV link, a screenshot."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from analysis.advise import advise
from analysis.est import compute_est
from analysis.explore import display_units, encode_column, three_digits, write_explorer
from analysis.report import read_store
from analysis.store import load_subnets, load_trials
from tests.analysis.test_explore import ROUND_TRIP, demo_store

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("explore_browser") / "store")


@pytest.fixture(scope="module")
def page(store, tmp_path_factory):
    return write_explorer(store, None, tmp_path_factory.mktemp("explorer"))


@pytest.fixture(scope="module")
def browser(page, tmp_path_factory):
    """A headless chromium that has opened the page from its file:// URL (logs of the console and network kept)."""
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)  # fmt: skip
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # never downloads a driver
    try:
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return window.explorerReady === true"))
        yield driver
    finally:
        driver.quit()


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def select(driver, element_id: str, value: str) -> None:
    js(driver, "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
               "s.dispatchEvent(new Event('change'));", element_id, value)  # fmt: skip


def heatmap(driver) -> dict:
    return js(driver, "const t = document.getElementById('heatmap').data[0];"
                      "return {x: t.x, y: t.y, z: t.z, title: document.getElementById('heatmap').layout.title.text};")


def test_page_opens_from_a_file_url_without_console_errors(browser, page):
    assert browser.current_url.startswith("file://") and browser.current_url.endswith("/index.html")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert js(browser, "return typeof Plotly") == "object"


def test_no_http_or_https_resource_is_loaded(browser):
    urls = [json.loads(e["message"])["message"]["params"]["request"]["url"] for e in browser.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"]  # fmt: skip
    assert any(u.endswith("/plotly.min.js") and u.startswith("file://") for u in urls)
    assert [u for u in urls if u.startswith(("http://", "https://"))] == []
    entries = js(browser, "return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in entries if u.startswith(("http://", "https://"))] == []


def test_heatmap_has_one_cell_per_budget_and_epoch_of_the_chosen_group(browser, store):
    select(browser, "sweep", "demo")
    select(browser, "family", "resnet")
    _, epochs, _ = read_store(store, "demo")
    grid = compute_est(epochs).grid
    want = grid[grid["family"] == "resnet"]
    h = heatmap(browser)
    cells = [z for row in h["z"] for z in row if z is not None]
    assert len(cells) == len(h["x"]) * len(h["y"]) == len(want) == 20
    assert sorted(h["y"]) == sorted(want["epoch"].unique())


def hover(driver, epoch_row: int, budget_column: int) -> str:
    return js(driver, "return document.getElementById('heatmap').data[0].text[arguments[0]][arguments[1]]",
              epoch_row, budget_column)  # fmt: skip


def test_heatmap_hover_shows_each_class_mean_and_spread_seeds_deviation_and_the_est_line(browser):
    select(browser, "sweep", "demo")
    select(browser, "family", "resnet")
    # Epoch 4 (last row), budget 40k (third column): ensembles lead by 3 pp; seeds at -0.2, 0, +0.2 pp.
    text = hover(browser, 3, 2)
    assert "budget 0.04M parameters, epoch 4" in text
    assert "single: 84.00% ± 0.20 (95% CI ± 0.50) over 3 seeds, budget deviation -2.0%" in text
    assert "deq: 87.00% ± 0.20 (95% CI ± 0.50) over 3 seeds" in text and "weq: 87.00% ± 0.20" in text
    assert "deq − single: +3.00 pp [+2.55, +3.45]" in text and "P(outperform) 1.00: <b>wins</b>" in text
    assert "EST line at epoch 4: 0.04M (switchover in (0.02M, 0.04M])" in text
    assert "winner: <b>all ensembles</b>" in text


def test_hover_of_a_marked_cell_names_the_deviating_class(browser):
    from analysis.explore import cell_table, heatmap_figure
    from analysis.figures import cost_table
    from tests.analysis.synth import assign
    from tests.analysis.test_budget_deviation import trials_with_deviation

    t, e = trials_with_deviation("weq", 160_000, -30.0)
    res = compute_est(e, t)
    g = {"cell_table": cell_table(res.grid, res.stats, res.per_epoch, cost_table(assign(t)), "welch"),
         "figs": {"heatmap": heatmap_figure(res.grid, res.per_epoch, "t", "welch", "")}}  # fmt: skip
    text = js(browser, "return hoverText(arguments[0])", g)[-1][-1]  # the last epoch at 160k
    assert "<b>marked</b>: weq further than 10% from the budget" in text
    assert "weq: 87.00% ± 0.20 (95% CI ± 0.50) over 3 seeds, budget deviation -30.0%" in text


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_compact_columns_decode_in_the_page_to_the_values_python_encoded(browser, name):
    values, _ = ROUND_TRIP[name]
    got = js(browser, "return column(arguments[0], arguments[1]).map((v) => Object.is(v, -0) ? '-0' : v)",
             encode_column(values), len(values))  # fmt: skip
    assert got == ["-0" if v == 0 and math.copysign(1, v) < 0 else v for v in values]


def test_the_page_prints_numbers_as_python_formats_them(browser):
    values = [84.375, 84.385, 0.125, -0.001, -0.0, 2.675, 1e-9, 99.995, -3.45, 12.5, float("nan")]
    ps = [0.000758347342248017, 1.355364e-07, 1.0, 0.5, 0.04449, 0.0001, 0.00009996, 2e-300, 0.0, float("nan")]
    shown = js(browser, "return [arguments[0].map((u) => fixed(u, 2)), arguments[0].map((u) => fixed(u, 2, true)),"
                        "arguments[1].map(g3)]", display_units(values, 2), three_digits(ps))  # fmt: skip
    assert shown == [[f"{x:.2f}" for x in values], [f"{x:+.2f}" for x in values], [f"{p:.3g}" for p in ps]]


def test_switching_the_group_changes_the_heatmap(browser):
    select(browser, "sweep", "demo")
    select(browser, "family", "resnet")
    before = heatmap(browser)
    select(browser, "family", "wrn")
    after = heatmap(browser)
    assert js(browser, "return document.getElementById('k').value") == "4"
    assert "wrn / k=4" in after["title"] and "resnet / k=2" in before["title"]
    assert (len(after["x"]), len(after["y"])) == (3, 3) and after["z"] != before["z"]
    assert "wrn" in js(browser, "return document.getElementById('est').textContent")


def advisor_label(driver) -> str | None:
    return js(driver, "const b = document.getElementById('advice-label'); return b ? b.textContent : null;")


def move_latency_slider(driver, position: int) -> float | None:
    """Move the latency slider to `position` (0..200, 200 = no limit); return the limit the page then shows (ms)."""
    js(driver, "const r = document.getElementById('max_latency_ms-range'); r.value = arguments[0];"
               "r.dispatchEvent(new Event('input'));", str(position))  # fmt: skip
    value = js(driver, "return document.getElementById('max_latency_ms').value")
    return float(value) if value else None


@pytest.mark.parametrize("sweep", ["demo", "adaptive"])
def test_moving_the_latency_limit_changes_the_advice_as_analysis_advise_computes_it(browser, store, sweep):
    select(browser, "sweep", sweep)
    trials = load_trials(str(store), sweep=sweep)
    subnets = load_subnets(str(store), sweep=sweep)
    subnets = subnets if not subnets.empty else None
    answers = []
    for position in (200, 120, 60, 30):
        limit = move_latency_slider(browser, position)
        best = advise(trials, max_latency_ms=limit, subnets=subnets).best
        assert advisor_label(browser) == (None if best is None else best["label"]), f"limit {limit} ms"
        answers.append(advisor_label(browser))
    assert len(set(answers)) >= 2  # the limit changed the answer
    move_latency_slider(browser, 0)
    assert advise(trials, max_latency_ms=0.0, subnets=subnets).best is None
    text = js(browser, "return document.getElementById('advice-best').innerText")
    assert "No measured design fits all limits" in text


def test_adaptive_sweep_shows_its_subnetwork_plots(browser):
    select(browser, "sweep", "adaptive")
    assert js(browser, "return document.getElementById('subnets-section').style.display") == ""
    names = js(browser, "return document.getElementById('subnets-macs').data.map(t => t.name)")
    assert "mutual, 12 px" in names and "single (fixed design)" in names
    select(browser, "sweep", "demo")
    assert js(browser, "return document.getElementById('subnets-section').style.display") == "none"


def test_trials_table_lists_the_group_and_its_csv_link_downloads_the_same_rows(browser):
    select(browser, "sweep", "demo")
    select(browser, "family", "wrn")
    rows = js(browser, "return document.querySelectorAll('#trials tr').length") - 1
    assert rows == 4 * 3 * 3
    href = js(browser, "return document.getElementById('csv').href")
    assert href.startswith("blob:file://") or href.startswith("blob:null/")
    csv = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('csv').href).then(r => r.text()).then(done);"
    )
    lines = csv.strip().split("\n")
    assert lines[0].startswith("trial_id,status,design_class,role,family") and len(lines) == rows + 1
    assert all(",wrn," in line for line in lines[1:])


def test_screenshot_is_saved(browser, tmp_path):
    select(browser, "sweep", "demo")
    path = tmp_path / "explorer.png"
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # none after all the clicking
