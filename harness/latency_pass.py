"""The sweep's latency pass: after its trials, one process times the networks of every finished trial of a budget in
blocks interleaved across those trials, so that the seeds and designs compared at one budget are timed under the
same conditions.

Why: a trial times its own networks at its end (`latency_ms_p50`), whenever that is. On a machine whose speed drifts
under other tenants (this project's 2-core VM: the same network read 1.0-2.6 ms from one quarter second to the next),
two seeds of one design then read up to 1.6x apart, and no statistic over one trial's timings removes a drift that
outlasts them. Interleaving the trials in one process gives every network the same conditions, as the bench does
for its A/A check. Latency depends on the architecture, not on the trained values, so the networks are built from
each trial's design and seed.
"""

from __future__ import annotations

from itertools import groupby

import torch

from harness import measure
from harness.loop import pick_device, resolve_precision
from harness.networks import build_members
from harness.store import completed_trial_ids, update_trial_rows
from spaces.classes import FIXED_CLASSES

COLUMNS = ("latency_interleaved_ms_p50", "latency_interleaved_ms_p90", "latency_interleaved_ms_iqr")
# Our choice: the pass costs seconds beside a sweep's training, so each network gets three times a trial's timed runs
# (`measure.latency_runs`) in twice its blocks: more samples of the conditions the networks share.
RUNS_FACTOR, BLOCKS = 3, 2 * measure.LATENCY_BLOCKS


def batch1_run(config: dict, device: torch.device):
    """Return a function running one batch-1 forward of the config's members, one after another, in eval mode under
    the trial's precision, as the trial's own latency measurement does."""
    design, recipe = config["design"], config["recipe"]
    channels_last = bool(recipe.get("channels_last")) and device.type == "cuda"
    models = [m.eval() for m in build_members(design, int(config["seed"]), device, channels_last)]
    _, amp_dtype = resolve_precision(recipe.get("precision", "fp32"), device)
    side = int(config["dataset"]["image_size"])
    return measure.members_forward(models, (1, int(design["in_chans"]), side, side), device, amp_dtype, channels_last)


def interleaved_latency_ms(configs: list[dict], device: torch.device, warmup: int, runs: int,
                           blocks: int = measure.LATENCY_BLOCKS) -> dict[str, dict]:  # fmt: skip
    """Return {trial_id: {"p50", "p90", "iqr"}} in ms: the batch-1 latency of each config's networks (members one after
    another), all timed in the same interleaved blocks (`measure.blocked_latency_ms`) while holding the node's
    latency lock."""
    modes = {config["trial_id"]: batch1_run(config, device) for config in configs}
    with measure.one_measurement_per_node():
        return measure.blocked_latency_ms(modes, device, warmup, runs, blocks)


def trial_threads(config: dict) -> int:
    """Return the torch threads the config's trial ran with: `measure.threads`, or else its CPUs (Ray sets a trial
    worker's thread count from them)."""
    threads = int((config.get("measure") or {}).get("threads") or 0)
    return threads or max(1, int((config.get("resources") or {}).get("cpus", 1)))


def latency_pass(store: str, sweep: str, configs: list[dict]) -> int:
    """Time every `ok` trial of a fixed class (single, deq, weq, dct) of `configs` in the store, budget by budget
    (`interleaved_latency_ms`, with the first config's device, thread count and warm-up, RUNS_FACTOR times its timed
    runs in BLOCKS blocks), and write the results into their trials rows as `latency_interleaved_ms_p50/p90/iqr`;
    return the number of rows written. Torch's thread count is restored."""
    ok = completed_trial_ids(store, sweep, ("ok",))
    # Adaptive classes (mutual, coop) deploy a sub-network, not their trained networks side by side: their own rows
    # and the subnets table hold their latencies.
    chosen = sorted((c for c in configs if c["trial_id"] in ok and c["design"]["design_class"] in FIXED_CLASSES),
                    key=lambda c: c["design"]["budget"])  # fmt: skip
    if not chosen:
        return 0
    device = pick_device(chosen[0].get("resources") or {})
    cfg = chosen[0]["measure"]
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(trial_threads(chosen[0]))
    try:
        values = {}
        for _, group in groupby(chosen, key=lambda c: c["design"]["budget"]):
            timed = interleaved_latency_ms(list(group), device, int(cfg["latency_warmup"]),
                                           RUNS_FACTOR * int(cfg["latency_runs"]), BLOCKS)  # fmt: skip
            values.update({tid: dict(zip(COLUMNS, (t["p50"], t["p90"], t["iqr"]), strict=True))
                           for tid, t in timed.items()})  # fmt: skip
    finally:
        torch.set_num_threads(saved_threads)
    return update_trial_rows(store, sweep, values)
