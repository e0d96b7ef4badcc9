"""The coop trial (cooperative depth-adaptive training) on digits: two teammates and a leader train together, and
every teammate's sub-network at every scaling factor (and the leader) lands in the store's subnets table."""

from __future__ import annotations

import pytest
import torch

from analysis.store import load_subnets, load_trials
from harness.kinds.coop import coop_loss, epoch_scales
from harness.store import build_subnet_rows, rows_from_result, write_trial
from harness.trial import run_trial
from spaces.families import create_model
from spaces.families.depthmask import DepthMaskedNet
from spaces.spec import load_spec, trial_configs
from tests.harness.conftest import curve_of, kill_and_resume

OVERRIDES = [
    "epochs=2",
    "recipe.lr=0.1",
    "families.0.widths=[4]",
    "recipe.coop.scales=[0.25, 0.5, 1.0]",
    "measure.latency_runs=3",
    "measure.latency_warmup=1",
]


@pytest.fixture(scope="module")
def coop_run():
    """(config, result, reported records) of the coop_digits preset's coop trial, shortened."""
    config = next(
        c for c in trial_configs(load_spec("coop_digits", OVERRIDES)) if c["design"]["design_class"] == "coop"
    )
    got = []
    return config, run_trial(config, got.append), got


def test_each_epoch_trains_the_full_and_the_smallest_network_and_two_other_scales():
    gen = torch.Generator().manual_seed(0)
    assert epoch_scales([0.25, 0.5, 1.0], gen) == [1.0, 0.5, 0.25]
    drawn = epoch_scales([0.2, 0.4, 0.6, 0.8, 1.0], gen)
    assert len(drawn) == 4 and drawn[0] == 1.0 and drawn[-1] == 0.2
    assert set(drawn) <= {0.2, 0.4, 0.6, 0.8, 1.0}


def test_one_coop_loss_gives_gradients_to_all_three_networks_and_the_mask_logits():
    torch.manual_seed(0)
    mates = [DepthMaskedNet(create_model("resnet", 14, 4, num_classes=10, in_chans=1)) for _ in range(2)]
    leader = create_model("resnet", 14, 4, num_classes=10, in_chans=1)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    loss = coop_loss(mates, leader, x, y, [1.0, 0.5, 0.25], 1.0, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    for mate in mates:
        assert bool((mate.mask_logits.grad != 0).any())
        assert mate.net.fc.weight.grad.abs().sum() > 0
    assert leader.fc.weight.grad.abs().sum() > 0



def test_in_the_coop_loss_the_leader_learns_from_the_labels_only():
    # Cooperative learning, Eq. 18: the leader's output is a detached target of the teammates' KL terms.
    torch.manual_seed(0)
    mates = [DepthMaskedNet(create_model("resnet", 14, 4, num_classes=10, in_chans=1)) for _ in range(2)]
    leader = create_model("resnet", 14, 4, num_classes=10, in_chans=1)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    coop_loss(mates, leader, x, y, [1.0, 0.5], 1.0, torch.Generator().manual_seed(0)).backward()
    full = [p.grad.clone() for p in leader.parameters()]
    leader.zero_grad()
    torch.nn.functional.cross_entropy(leader(x), y).backward()
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(full, leader.parameters(), strict=True))

def test_coop_trial_learns_digits_and_reports_each_epoch_then_the_final_record(coop_run):
    config, result, got = coop_run
    assert [r["kind"] for r in got] == ["epoch", "epoch", "final"]
    final = result["final"]
    assert final["status"] == "ok" and final["final_acc"] > 0.2  # chance is 0.1; the leader's accuracy
    assert len(result["epochs"][-1]["member_acc"]) == 3
    assert result["epochs"][-1]["train_loss"] < result["epochs"][0]["train_loss"]
    assert final["params_total"] == 3 * final["params_member"][0] == config["design"]["params_total"]


def test_every_teammate_is_evaluated_at_every_scale_and_the_leader_at_full_depth(coop_run):
    _, result, _ = coop_run
    subnets = result["final"]["subnets"]
    assert sorted((s["network"], s["scale"]) for s in subnets) == [
        ("leader", 1.0),
        *[(f"teammate_{i}", s) for i in (1, 2) for s in (0.25, 0.5, 1.0)],
    ]
    for s in subnets:
        assert 0.0 <= s["test_acc"] <= 1.0 and s["latency_ms_p50"] > 0 and s["macs"] * 2 == s["flops_torch"]
        assert s["width_mult"] == 1.0 and s["resolution"] == 16 and s["subnet_kind"] == "depth"


def test_sub_network_cost_grows_with_scale_and_the_full_scale_is_the_whole_network(coop_run):
    config, result, _ = coop_run
    by = {(s["network"], s["scale"]): s for s in result["final"]["subnets"]}
    # ResNet-14: 6 blocks, 4 skippable; scales 0.25 / 0.5 / 1.0 keep 1 / 2 / 4 of them.
    assert [by[("teammate_1", s)]["blocks_executed"] for s in (0.25, 0.5, 1.0)] == [3, 4, 6]
    assert by[("teammate_1", 0.25)]["macs"] < by[("teammate_1", 0.5)]["macs"] < by[("teammate_1", 1.0)]["macs"]
    assert by[("teammate_1", 0.25)]["params"] < by[("teammate_1", 1.0)]["params"] == config["design"]["params_member"]
    assert by[("leader", 1.0)]["macs"] == by[("teammate_2", 1.0)]["macs"] == result["final"]["flops_torch"] // 6


def test_coop_trial_writes_its_subnets_rows_to_the_store(coop_run, tmp_path):
    config, result, _ = coop_run
    row, epochs = rows_from_result(config, result)
    write_trial(str(tmp_path), "coop_digits", row, epochs, build_subnet_rows(config, result))
    subnets = load_subnets(str(tmp_path), sweep="coop_digits")
    assert len(subnets) == 7
    assert set(subnets["design_class"]) == {"coop"} and set(subnets["subnet_kind"]) == {"depth"}
    assert sorted(subnets["scale"].unique()) == [0.25, 0.5, 1.0]
    assert set(subnets["network"]) == {"teammate_1", "teammate_2", "leader"}
    assert load_trials(str(tmp_path))["members"].tolist() == [3]


def test_a_killed_coop_trial_resumes_to_the_uninterrupted_result(coop_run, tmp_path):
    config, uninterrupted, _ = coop_run
    resumed, reported = kill_and_resume(config, tmp_path, after_epoch=1)
    assert [r["kind"] for r in reported] == ["epoch", "final"]  # epoch 1 came from the checkpoint, not again
    assert curve_of(resumed) == curve_of(uninterrupted)
    grid = ("network", "scale", "blocks_executed", "test_acc")
    assert [[s[k] for k in grid] for s in resumed["final"]["subnets"]] == [
        [s[k] for k in grid] for s in uninterrupted["final"]["subnets"]
    ]


def test_with_the_papers_scales_an_epoch_trains_1_0_and_0_2_and_two_of_0_3_to_0_9():
    # Cooperative learning, section 5.1; the coop_cifar100 preset's scales.
    gen = torch.Generator().manual_seed(0)
    scales = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    draws = [epoch_scales(scales, gen) for _ in range(50)]
    assert all(d[0] == 1.0 and d[-1] == 0.2 and len(d) == 4 for d in draws)
    middle = {s for d in draws for s in d[1:3]}
    assert middle == {0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
