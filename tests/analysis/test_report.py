"""Report: one page with EST text, figures and tables; works on partial stores and says what is missing."""

import json

import pytest

from analysis.__main__ import main
from analysis.report import missing_report, write_report
from tests.analysis.synth import frames, grid_trials, make_trial, write_store
from tests.analysis.test_est import BUDGETS, SEED_NOISE, known_est_acc

SLUG = "digits_resnet_k2_floor"


@pytest.fixture(scope="module")
def partial_report(tmp_path_factory):
    """A sweep still running: one absent trial, one diverged, one without a trials row, one unreadable file."""
    root = tmp_path_factory.mktemp("store")
    trials = grid_trials(known_est_acc, BUDGETS, classes=("single", "deq", "dct"))
    trials = [
        t for t in trials if not (t[0]["design_class"] == "dct" and t[0]["budget"] == 10_000 and t[0]["seed"] == 2)
    ]
    trials.append(make_trial("deq", 20_000, 2, [0.7, float("nan")], epochs=4, status="diverged", family="resnet"))
    trials.append(make_trial("single", 160_000, 3, [0.8, 0.81], epochs=4, with_trial_row=False))
    write_store(root, "demo", trials)
    (root / "epochs" / "sweep=demo" / "broken.parquet").write_bytes(b"PAR1 truncated")
    out = tmp_path_factory.mktemp("report")
    return write_report(root, "demo", out, formats=("png", "svg")), out


def test_report_writes_the_page_figures_and_tables(partial_report):
    page, out = partial_report
    assert page == out / "index.md"
    for kind in ("winners", "error", "time_to_acc", "costs"):
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{SLUG}_{kind}.{ext}").stat().st_size > 1000
    for name in (
        "index.html",
        "est.json",
        "est_summary.md",
        "est_summary.csv",
        "winner_grid.csv",
        "dct_table.md",
        "dct_table.csv",
        "dct_table.tex",
    ):
        assert (out / name).exists(), name
    text = page.read_text()
    assert f"![winner heatmap — digits / resnet / k=2, fit=floor](figures/{SLUG}_winners.png)" in text


def test_report_writes_png_figures_only_unless_asked_for_vector_files(tmp_path):
    write_store(tmp_path / "s", "demo", grid_trials(known_est_acc, BUDGETS))
    write_report(tmp_path / "s", "demo", tmp_path / "r")
    written = sorted(p.suffix for p in (tmp_path / "r" / "figures").iterdir())
    assert written and set(written) == {".png"}


def test_the_figures_folder_holds_only_the_figures_the_page_shows(tmp_path):
    # Cost figures start drawing from the trials table before the cells are decided: the wrn trials have trials rows
    # but no epoch rows yet, so no EST section, and their cost figure is not kept either.
    trials = grid_trials(known_est_acc, BUDGETS)
    trials += [(row, []) for row, _ in grid_trials(known_est_acc, BUDGETS, family="wrn")]
    write_store(tmp_path / "s", "demo", trials)
    page = write_report(tmp_path / "s", "demo", tmp_path / "r").read_text()
    written = sorted(p.name for p in (tmp_path / "r" / "figures").iterdir())
    assert f"{SLUG}_costs.png" in written and "digits_wrn_k2_floor_costs.png" not in written
    assert written == sorted(name for name in written if f"(figures/{name})" in page)


def test_report_refuses_an_unknown_figure_format_in_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^figure formats: 'jpg' not allowed; allowed: png, svg, pdf$"):
        write_report(tmp_path / "s", "demo", tmp_path / "r", formats=("png", "jpg"))
    write_store(tmp_path / "s", "demo", grid_trials(known_est_acc, BUDGETS[:2]))
    assert main(["report", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "r"), "--formats", "svg"]) == 2
    assert capsys.readouterr().err == "error: figure formats svg lack png, which the report page shows; e.g. png,svg\n"
    assert not (tmp_path / "r").exists()  # refused before anything ran


def test_the_store_read_in_a_forked_reader_gives_the_tables_and_warnings_read_here(tmp_path, monkeypatch):
    import pandas as pd

    from analysis import report
    from analysis import store as analysis_store

    # The forked reader reads the first files of the trials table, this process the rest: a column only some files
    # have (written by a later harness) and an unreadable file must come out as in one read.
    trials = grid_trials(known_est_acc, BUDGETS[:2])
    trials += grid_trials(known_est_acc, BUDGETS[2:3], latency_interleaved_ms_p50=1.5)
    write_store(tmp_path, "demo", trials)
    for table in ("trials", "epochs"):
        (tmp_path / table / "sweep=demo" / "broken.parquet").write_bytes(b"PAR1 truncated")
    monkeypatch.setattr(analysis_store, "forking_is_safe", lambda: True)
    forked = report.read_store(tmp_path, "demo")
    monkeypatch.setattr(analysis_store, "forking_is_safe", lambda: False)
    here = report.read_store(tmp_path, "demo")
    pd.testing.assert_frame_equal(forked[0], here[0])
    pd.testing.assert_frame_equal(forked[1], here[1])
    assert forked[2] == here[2] and [w.split("/")[-3] for w in here[2]] == ["trials", "epochs"]
    assert forked[0]["latency_interleaved_ms_p50"].notna().sum() == 9


def test_the_html_page_shows_the_dct_comparison_as_a_table(partial_report):
    _, out = partial_report
    page = (out / "index.html").read_text()
    section = page.split("<h2>Divide and co-train comparison</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<table" in section and "| dataset" not in section
    assert "<th>S</th>" in section


def test_report_states_the_est_with_its_interval(partial_report):
    page, out = partial_report
    text = page.read_text()
    assert ("EST = 0.04M parameters (95% interval [0.04M, 0.04M] over seed resamples) at the final epoch (4); "
            "the switchover lies in (0.02M, 0.04M]") in text
    assert "Verdicts: Welch t-test per comparison with single at level 0.05, Benjamini-Hochberg" in text
    assert json.loads((out / "est.json").read_text())["groups"][0]["overall"]["est_budget"] == 40_000


def test_report_lists_what_is_missing(partial_report):
    page, out = partial_report
    text = page.read_text()
    assert "Unreadable files skipped: 1." in text and "broken.parquet" in text
    assert "Trials not ok (diverged / error): 1." in text
    assert "Trials with epoch rows but no trials row (running or interrupted): 1." in text
    assert "Trials with missing epochs: 1." in text
    assert (out / "missing_absent.csv").exists()


def test_missing_report_finds_absent_grid_cells_and_missing_epochs():
    trials = grid_trials(known_est_acc, [10_000, 20_000])
    trials = [
        t for t in trials if not (t[0]["design_class"] == "weq" and t[0]["budget"] == 20_000 and t[0]["seed"] == 1)
    ]
    trials.append(make_trial("single", 40_000, 0, [0.8, 0.8], epochs=4, with_trial_row=False))
    t, e = frames(trials)
    miss = missing_report(t, e)
    absent = miss["absent"]
    weq = absent[(absent["design_class"] == "weq") & (absent["budget"] == 20_000)]
    assert list(weq["seed"]) == [1]
    lost = miss["missing epochs"].set_index("budget")
    assert lost.loc[40_000, "missing_epochs"] == "3-4"
    assert list(miss["no trials row"]["last_epoch"]) == [2]


def test_report_says_when_there_is_no_est(tmp_path):
    def acc(cls, budget, epoch, seed):
        return 0.8 + SEED_NOISE[seed] + (-0.03 if cls != "single" else 0.0)

    write_store(tmp_path / "s", "demo", grid_trials(acc, BUDGETS[-3:], epochs=2))
    text = write_report(tmp_path / "s", "demo", tmp_path / "r", make_figures=False).read_text()
    assert "no EST in the grid — ensembles do not beat the single network at the largest budget" in text
    assert "(at 0.16M: single)" in text
    assert "No dct designs" in text


def test_report_on_a_single_seed_says_no_test_can_decide_a_cell(tmp_path):
    write_store(tmp_path / "s", "demo", grid_trials(known_est_acc, BUDGETS[1:], seeds=(0,)))
    text = write_report(tmp_path / "s", "demo", tmp_path / "r", make_figures=False).read_text()
    assert "1 seed: no test can decide a cell" in text
    assert "no EST in the grid" in text and "Cells at the final epoch: 4 unresolved" in text


def test_report_under_an_overlap_rule_says_ties_cannot_be_assessed_with_one_seed(tmp_path):
    write_store(tmp_path / "s", "demo", grid_trials(known_est_acc, BUDGETS[1:], seeds=(0,)))
    text = write_report(tmp_path / "s", "demo", tmp_path / "r", tie_rule="std", make_figures=False).read_text()
    assert "1 seed: ties cannot be assessed" in text


def test_report_on_an_empty_sweep_writes_a_page_that_says_so(tmp_path):
    page = write_report(tmp_path / "nothing", "demo", tmp_path / "r")
    assert "EST cannot be computed yet" in page.read_text()


def test_cli_report_writes_the_page(tmp_path, capsys):
    write_store(tmp_path / "s", "demo", grid_trials(known_est_acc, BUDGETS[:2], classes=("single", "deq")))
    assert (
        main(["report", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "r"), "--no-html", "--no-figures"]) == 0
    )
    assert "report written" in capsys.readouterr().out
    assert (tmp_path / "r" / "index.md").exists() and not (tmp_path / "r" / "index.html").exists()


def test_the_cli_refuses_a_store_that_does_not_exist_and_lists_the_folder(tmp_path, capsys):
    (tmp_path / "results" / "trials" / "sweep=digits").mkdir(parents=True)
    assert main(["report", "--store", str(tmp_path / "resluts"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no results store at {tmp_path / 'resluts'}; stores in {tmp_path}: results"]
    assert not (tmp_path / "r").exists()


def test_the_cli_refuses_a_sweep_the_store_does_not_hold_and_lists_those_it_does(tmp_path, capsys):
    write_store(tmp_path / "s", "demo", grid_trials(known_est_acc, BUDGETS[-2:], epochs=2))
    assert main(["report", "--store", str(tmp_path / "s"), "--sweep", "dmeo", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == f"error: the store {tmp_path / 's'} holds no sweep 'dmeo'; it holds: demo"
