"""Adaptive seeds on the session's real local Ray: the first round, one look that adds a seed to the design points
whose cells on the EST's path are unresolved, the footer's seeds spent against max, and a rerun that continues from
the store (here: finds nothing left to run)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest

from analysis.store import load_trials
from harness.seed_search import configs_for_look, point_key
from harness.sweep import run_sweep
from run_sweep import seeds_wanted_for
from spaces.spec import trial_configs
from tests.sweep.conftest import tiny_spec

pytestmark = pytest.mark.slow


def adaptive_spec():
    # single vs deq at one budget, 1 epoch; 2 seeds first, then one look at 3. At 2 seeds no cell can resolve (the
    # O'Brien-Fleming level of the first look is 1e-4), so the look extends both points.
    return tiny_spec('classes=["single","deq"]', "families.0.widths=[8]", "seeds={min=2,max=3}")


def test_a_look_adds_seeds_only_up_to_the_next_look_and_never_repeats_a_trial():
    spec = adaptive_spec()
    first = trial_configs(spec)
    wanted = [{"dataset": "digits", "family": "resnet", "design_class": "deq", "members": 2,
               "budget": first[-1]["design"]["budget"], "fit": "floor", "n_seeds": 2, "target_seeds": 3}]  # fmt: skip
    added = configs_for_look(wanted, first, set())
    assert [(point_key(c)[2], c["seed"]) for c in added] == [("deq", 2)]
    assert added[0]["trial_id"] not in {c["trial_id"] for c in first}
    assert configs_for_look(wanted, first, {added[0]["trial_id"]}) == []


def test_an_adaptive_sweep_adds_a_look_in_the_same_run_and_a_rerun_has_nothing_left(ray_local, tmp_path):
    spec = adaptive_spec()
    store = str(tmp_path / "store")
    out = io.StringIO()
    with redirect_stdout(out):
        summary = run_sweep(spec, store=store, seeds_wanted=seeds_wanted_for(spec), progress_every_s=1)
    text = out.getvalue()
    trials = load_trials(store, sweep=spec.name)
    assert summary.ok
    assert sorted(trials.groupby("design_class")["seed"].apply(sorted).to_dict().items()) == [
        ("deq", [0, 1, 2]), ("single", [0, 1, 2])]  # fmt: skip
    assert "look 1: 2 trial(s) added" in text
    assert "seeds spent: 6 trials of 6 with max seeds everywhere" in text
    assert "of max everywhere" in text  # the progress line
    again = io.StringIO()
    with redirect_stdout(again):
        run_sweep(spec, store=store, seeds_wanted=seeds_wanted_for(spec))
    assert "look 1: nothing on the EST's path is open" in again.getvalue()
    assert len(load_trials(store, sweep=spec.name)) == 6


def test_a_rerun_whose_first_round_is_done_counts_the_looks_trials_in_the_progress_total(ray_local, tmp_path):
    # The first run stops after the first round (its looks find nothing open); the rerun's first look is made before
    # Ray starts and adds one seed to both points: the progress line counts them, so it never reads more than 100%.
    spec = adaptive_spec()
    store = str(tmp_path / "store")
    with redirect_stdout(io.StringIO()):
        run_sweep(spec, store=store, seeds_wanted=lambda store, sweep: [])
    assert len(load_trials(store, sweep=spec.name)) == 4
    out = io.StringIO()
    with redirect_stdout(out):
        summary = run_sweep(spec, store=store, seeds_wanted=seeds_wanted_for(spec), progress_every_s=0)
    assert summary.ok
    counts = [line.split("] ", 1)[1].split(" done")[0] for line in out.getvalue().splitlines()
              if line.startswith(f"[{spec.name} ") and " done (" in line]  # fmt: skip
    assert counts, out.getvalue()
    done_total = [tuple(int(x) for x in c.split("/")) for c in counts]
    assert all(done <= total for done, total in done_total), counts
    assert done_total[-1] == (6, 6)
