"""Two drivers started together on one store, as a researcher who submits the same job twice or two colleagues who
share a store would: both exit 0, and between them every trial is trained exactly once (claims, harness.claims), on
a local folder and on an S3 store (moto's server on loopback)."""

from __future__ import annotations

import re

import pytest

from analysis.store import load_epochs, load_trials
from harness.claims import Claims
from tests.sweep.conftest import run_cli
from tests.sweep.s3 import start_s3_server

pytestmark = pytest.mark.slow

# Three 1-epoch trials of the single ResNet (one width, three seeds): more than the two CPUs each driver's Ray has, so
# both drivers reach for the same trials at once and again when their first ones end.
ARGS = ["--spec", "digits", "--set", 'classes=["single"]', "--set", "families.0.widths=[8]", "--set", "seeds=[0,1,2]",
        "--set", "epochs=1", "--set", "measure.latency_runs=3", "--set", "measure.throughput_batch=32",
        "--no-report"]  # fmt: skip
TRAINED = re.compile(r"^\[digits\] trial (\S+) .*: (ok|diverged)(, final acc [0-9.]+)?$", re.MULTILINE)
RUN_ID = re.compile(r"Ray's output \(banners, warnings, tracebacks of failed attempts\): .*/(digits-[0-9a-f-]+)\.log")


@pytest.fixture(scope="module")
def s3():
    yield from start_s3_server()


def run_together(store: str, *extra: str, env: dict | None = None) -> list[tuple[int, str]]:
    """Start two drivers of the same sweep on `store` at once; return [(exit code, output)] of each."""
    drivers = [run_cli(*ARGS, "--store", store, *extra, **({"env": env} if env else {})) for _ in range(2)]
    return [(d.returncode, out) for d, (out, _) in ((d, d.communicate(timeout=500)) for d in drivers)]


def check_each_trial_trained_once(store: str, results: list[tuple[int, str]]) -> None:
    for rc, out in results:
        assert rc == 0, out[-3000:]
    trained = [set(m.group(1) for m in TRAINED.finditer(out)) for _, out in results]
    runs = [RUN_ID.search(out).group(1) for _, out in results]
    trials = load_trials(store, sweep="digits").set_index("trial_id")
    assert len(trials) == 3 and trials.index.is_unique and (trials["status"] == "ok").all()
    assert trained[0].isdisjoint(trained[1]), results  # no trial trained by both
    assert trained[0] | trained[1] == set(trials.index), results  # and none left out
    for run, ids in zip(runs, trained, strict=True):  # each row names the run that trained it
        assert set(trials.loc[sorted(ids), "run_id"]) <= {run}
    epochs = load_epochs(store, sweep="digits")
    assert len(epochs) == 3 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert Claims(store, "digits").current() == {}  # every claim released


def test_two_drivers_on_one_local_store_train_every_trial_once_between_them(store, ray_local):
    results = run_together(store, "--address", ray_local)  # two jobs on the session's Ray, as on a shared cluster
    check_each_trial_trained_once(store, results)
    # The driver that lost a trial said so, naming the run that trains it.
    skipped = [line for _, out in results for line in out.splitlines() if "being trained by" in line
               or "finished by another run" in line]  # fmt: skip
    assert skipped, results
    print("\n".join(out for _, out in results))  # shown with -s: what each driver printed


def test_two_drivers_on_one_s3_store_train_every_trial_once_between_them(s3):
    # Each driver starts an embedded Ray: the session's Ray workers do not have the test server's credentials.
    store = s3.store("twin")
    results = run_together(store, env=s3.env)
    check_each_trial_trained_once(store, results)
