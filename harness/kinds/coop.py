"""The `coop` trial kind: cooperative training for cost-adaptive (depth-adaptive) inference.

Three CIFAR ResNets of the design's family, depth and width: two teammates, each a `DepthMaskedNet` with one learned
logit per skippable residual block (`spaces.families.depthmask`: identity-shortcut blocks are skippable, a skipped
block passes its input through; projection blocks always run), and a leader (a plain network at full depth).

Each epoch samples its scaling factors from `scales`: the full network (1.0) and the smallest scale always, plus two
others drawn without replacement from the rest of the list. Per batch, with p(.) the softmax and KL(q || p) written
F.kl_div(log p, q) (the distillation direction: the detached target q, the trained distribution p):

- each teammate t: CE(full_t, y) + sum over its sampled sub-networks s < 1 of KL(full_t.detach() || sub_t,s) / s,
  where sub_t,s runs the Gumbel top-k straight-through block mask of t's logits (k = max(1, round(s * blocks)));
- between the teammates, at every sampled factor (1.0 included): KL(B_s.detach() || A_s) + KL(A_s.detach() || B_s),
  i.e. symmetric, each teammate towards the other's detached output (deep mutual learning);
- the leader (paper Eq. 18, `harness.losses.leader_loss`): CE(leader, y) + KL(leader.detach() || full_A) +
  KL(leader.detach() || full_B): the leader learns from the labels only, the full teammates learn toward it.

One backward of the sum and ONE optimizer step over all three networks and the mask logits. Mask logits get no
weight decay (they are neither conv nor linear weights). BatchNorm running statistics follow the full networks: the
sub-network passes run with BN momentum 0 (batch statistics normalize, running ones stay).

EPOCH records: test_acc / test_loss are the leader's (full depth), member_acc = [teammate 1 full, teammate 2 full,
leader]. After training every teammate is evaluated at every factor of `scales` with its hard inference mask (the
skipped blocks are not computed), and the leader at 1.0: test accuracy, executed parameters (stem + head + executed
blocks), MACs (torch FlopCounterMode / 2 on the executed sub-network, batch 1) and batch-1 latency. The FINAL record
holds them as `subnets` rows (width_mult 1.0, resolution the image side, `network`, `scale`, `blocks_executed`);
its trial-level measurements (params, MACs, latency) are of the three full networks, i.e. training cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness import measure
from harness.data import TrialData
from harness.kinds.base import Setup, TrialKind, register_kind
from harness.losses import leader_loss
from harness.networks import build_members, evaluate, make_optimizer
from spaces.families.depthmask import DepthMaskedNet, executed_params, gumbel_topk_mask, keep_count, masked_forward
from spaces.families.slimmable import bn_momentum, restore_bn_momentum


def epoch_scales(scales: list[float], gen: torch.Generator) -> list[float]:
    """Return the scaling factors of one epoch: 1.0 and min(scales) always, plus two others drawn without
    replacement from the rest of `scales` (fewer when the list is shorter), in descending order."""
    smallest = min(scales)
    rest = sorted({float(s) for s in scales} - {1.0, float(smallest)})
    order = torch.randperm(len(rest), generator=gen, device=gen.device).tolist()
    return sorted({1.0, float(smallest), *(rest[i] for i in order[:2])}, reverse=True)


def kl_to(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Return KL(softmax(target) || softmax(logits)) in nats per sample (batch mean); `target_logits` is detached."""
    return F.kl_div(
        F.log_softmax(logits.float(), dim=1), F.softmax(target_logits.detach().float(), dim=1), reduction="batchmean"
    )


def coop_loss(
    teammates: list[DepthMaskedNet],
    leader: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    scales: list[float],
    tau: float,
    gen: torch.Generator,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Return the cooperative objective of one batch (nats; the sum described in the module docstring) for the
    epoch's `scales` (1.0 = the full network)."""
    outputs = []  # per teammate: {scale: logits}
    loss = torch.zeros((), device=x.device)
    for mate in teammates:
        full = mate.net(x)
        loss = loss + F.cross_entropy(full.float(), y, label_smoothing=label_smoothing)
        out = {1.0: full}
        saved = bn_momentum(mate.net, 0.0)  # sub-networks leave the running statistics to the full network
        for s in scales:
            if s >= 1.0:
                continue
            mask = gumbel_topk_mask(mate.mask_logits, keep_count(s, len(mate.blocks)), tau, gen)
            out[s] = masked_forward(mate.net, x, mask)
            loss = loss + kl_to(full, out[s]) / s
        restore_bn_momentum(mate.net, saved)
        outputs.append(out)
    if len(teammates) == 2:
        a, b = outputs
        for s in a:
            loss = loss + kl_to(b[s], a[s]) + kl_to(a[s], b[s])
    return loss + leader_loss(leader(x), [out[1.0] for out in outputs], y, label_smoothing)


@torch.no_grad()
def _subnet_row(model: nn.Module, network: str, scale: float, blocks: int, params: int, data, recipe, measure_cfg,
                device, amp) -> dict:  # fmt: skip
    side = data.image_size
    acc = measure.subnet_accuracy(model, data, side, int(recipe["eval_batch_size"]), device, amp)
    sample = torch.zeros(1, data.in_chans, side, side, device=device)
    flops, _ = measure.torch_flops([model], sample)
    p50, p90 = measure.batch1_latency_ms(
        model, (data.in_chans, side, side), device, int(measure_cfg["latency_warmup"]),
        int(measure_cfg["latency_runs"]), amp,
    )  # fmt: skip
    return {
        "network": network,
        "scale": scale,
        "blocks_executed": blocks,
        "width_mult": 1.0,
        "resolution": side,
        "test_acc": acc,
        "params": params,
        "macs": None if flops is None else flops // 2,
        "flops_torch": flops,
        "latency_ms_p50": p50,
        "latency_ms_p90": p90,
        "subnet_kind": "depth",
    }


def evaluate_subnets(
    teammates: list[DepthMaskedNet], leader: nn.Module, data: TrialData, recipe: dict, measure_cfg: dict, device, amp
) -> list[dict]:
    """Return one subnets row per (teammate, scale in `scales`) with hard inference masks, then the leader's at scale
    1.0 (network, scale, blocks_executed, test_acc as a fraction, executed params, macs and flops_torch per sample,
    latency_ms_p50/p90 in ms); the teammates are left at scale 1.0 in eval mode."""
    rows = []
    for i, mate in enumerate(teammates):
        mate.eval()
        for s in sorted({float(v) for v in recipe["scales"]}, reverse=True):
            mate.scale = s
            blocks = len(mate.executed_blocks(s))
            params = executed_params(mate, s)
            rows.append(_subnet_row(mate, f"teammate_{i + 1}", s, blocks, params, data, recipe, measure_cfg, device,
                                    amp))  # fmt: skip
        mate.scale = 1.0
    leader.eval()
    params = measure.count_params(leader)
    rows.append(_subnet_row(leader, "leader", 1.0, len(leader.layers), params, data, recipe, measure_cfg, device, amp))
    return rows


class CoopKind(TrialKind):
    """Two depth-adaptive teammates and a leader trained cooperatively (the mask logits travel with the teammates'
    state in the checkpoint)."""

    def __init__(self, setup: Setup):
        super().__init__(setup)
        device = setup.device
        nets = build_members({**setup.design, "members": 3}, setup.seed, device, channels_last=False)
        self.teammates = [DepthMaskedNet(nets[0]).to(device), DepthMaskedNet(nets[1]).to(device)]
        self.leader = nets[2]
        self.models = [*self.teammates, self.leader]
        self.measured = [self.teammates[0].net, self.teammates[1].net, self.leader]
        # One SGD over the three networks (decay on conv/linear weights) and the mask logits (no decay).
        self.optimizer = make_optimizer([m.net for m in self.teammates] + [self.leader], setup.recipe)
        self.optimizer.add_param_group({"params": [m.mask_logits for m in self.teammates], "weight_decay": 0.0})
        self.scales: list[float] = []

    def start_epoch(self, epoch: int) -> float:
        super().start_epoch(epoch)
        self.scales = epoch_scales([float(s) for s in self.setup.recipe["scales"]], self.setup.gen)
        return 0.0

    def train_batch(self, inputs, y, scale) -> torch.Tensor:
        s = self.setup
        tau = float(s.recipe["gumbel_tau"])
        with s.amp:
            loss = coop_loss(self.teammates, self.leader, inputs[0], y, self.scales, tau, s.gen,
                             s.recipe["label_smoothing"])  # fmt: skip
        scale(loss).backward()
        return loss.detach()

    def evaluate(self) -> tuple[float, list[float], float]:
        # The leader is the trial's network; the teammates' full-depth accuracies stand beside it in member_acc.
        s = self.setup
        bs, fmt = s.recipe["eval_batch_size"], torch.contiguous_format
        lead_acc, _, lead_loss = evaluate([self.leader], s.data, "logits", bs, s.device, s.amp, fmt)
        _, mate_acc, _ = evaluate([m.net for m in self.teammates], s.data, "logits", bs, s.device, s.amp, fmt)
        return lead_acc, [*mate_acc, lead_acc], lead_loss

    def final_fields(self, status: str) -> dict:
        s = self.setup
        if status != "ok":
            return {"subnets": []}
        rows = evaluate_subnets(self.teammates, self.leader, s.data, s.recipe, s.config["measure"], s.device, s.amp)
        return {"subnets": rows}


register_kind("coop", CoopKind)
