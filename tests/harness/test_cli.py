"""`python -m harness.trial --spec ... --index N --set ...`: one JSON object per report on stdout."""

from __future__ import annotations

import json

from harness.trial import main


def test_cli_runs_one_trial_of_a_preset_and_prints_json_lines(capsys):
    overrides = ["epochs=1", "measure.latency_runs=5", "measure.throughput_batch=32"]
    status = main(["--spec", "digits", "--index", "2", *sum((["--set", o] for o in overrides), [])])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [r["kind"] for r in lines] == ["epoch", "final"]
    assert lines[1]["status"] == "ok" and len(lines[0]["member_acc"]) == 2  # index 2 is a deq pair
    # Trials count design points x seeds (2 seeds): index 2 is the second design's first seed, and says so.
    assert {(r["index"], r["design"]) for r in lines} == {(2, "deq k=2 resnet-14 w=5.62 seed=0")}


def test_cli_reports_an_index_out_of_range_as_a_usage_error(capsys):
    assert main(["--spec", "digits", "--index", "999"]) == 2
    assert "out of range" in capsys.readouterr().err
