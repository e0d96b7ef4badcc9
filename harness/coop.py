"""The `coop` trial: cooperative training for cost-adaptive (depth-adaptive) inference.

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

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness import measure
from harness.data import TrialData, load_data
from harness.losses import leader_loss
from harness.mutual import batch1_latency_ms, subnet_accuracy
from harness.trial import (
    build_members,
    derived_seed,
    evaluate,
    final_record,
    load_checkpoint,
    lr_schedule,
    make_optimizer,
    make_views,
    pick_device,
    print_record,
    resolve_precision,
    restore_training,
    run_epochs,
    save_training,
    train_batches,
    utc_now,
)
from harness.views import ViewMaker
from spaces.families.depthmask import DepthMaskedNet, executed_params, gumbel_topk_mask, keep_count, masked_forward
from spaces.families.slimmable import bn_momentum, restore_bn_momentum

# Keys of one sub-network's row (units as in the subnets table, results/README.md).
SUBNET_KEYS = ("network", "scale", "blocks_executed", "width_mult", "resolution", "test_acc", "params", "macs",
               "flops_torch", "latency_ms_p50", "latency_ms_p90", "subnet_kind")  # fmt: skip


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


def train_one_epoch_coop(
    teammates: list[DepthMaskedNet],
    leader: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler,
    data: TrialData,
    views: ViewMaker,
    recipe: dict,
    lr_at: Callable[[int], float],
    step: int,
    gen: torch.Generator,
    device: torch.device,
    amp,
) -> tuple[float, int, float]:
    """Train the teammates and the leader for one epoch; return (mean per-sample objective in nats, next step,
    last lr)."""
    for model in (*teammates, leader):
        model.train()
    scales = epoch_scales([float(s) for s in recipe["scales"]], gen)
    tau = float(recipe["gumbel_tau"])
    loss_sum, seen, lr = torch.zeros((), device=device), 0, float("nan")
    for inputs, y in train_batches(data, views, 1, False, recipe["batch_size"], gen, device):
        x = inputs[0]
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with amp:
            loss = coop_loss(teammates, leader, x, y, scales, tau, gen, recipe["label_smoothing"])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        step += 1
    return float(loss_sum) / max(1, seen), step, lr


@torch.no_grad()
def _subnet_row(model: nn.Module, network: str, scale: float, blocks: int, params: int, data, recipe, measure_cfg,
                device, amp) -> dict:  # fmt: skip
    side = data.image_size
    acc = subnet_accuracy(model, data, side, int(recipe["eval_batch_size"]), device, amp)
    sample = torch.zeros(1, data.in_chans, side, side, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(sample)
    flops = int(counter.get_total_flops())
    p50, p90 = batch1_latency_ms(
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
        "macs": flops // 2,
        "flops_torch": flops,
        "latency_ms_p50": p50,
        "latency_ms_p90": p90,
        "subnet_kind": "depth",
    }


def evaluate_subnets(
    teammates: list[DepthMaskedNet], leader: nn.Module, data: TrialData, recipe: dict, measure_cfg: dict, device, amp
) -> list[dict]:
    """Return one row (`SUBNET_KEYS`) per (teammate, scale in `scales`) with hard inference masks, then the leader's
    at scale 1.0; the teammates are left at scale 1.0 in eval mode."""
    rows = []
    for i, mate in enumerate(teammates):
        mate.eval()
        for s in sorted({float(v) for v in recipe["scales"]}, reverse=True):
            mate.scale = s
            blocks = len(mate.executed_blocks(s))
            rows.append(
                _subnet_row(
                    mate,
                    f"teammate_{i + 1}",
                    s,
                    blocks,
                    executed_params(mate, s),
                    data,
                    recipe,
                    measure_cfg,
                    device,
                    amp,
                )  # fmt: skip
            )
        mate.scale = 1.0
    leader.eval()
    params = measure.count_params(leader)
    rows.append(_subnet_row(leader, "leader", 1.0, len(leader.layers), params, data, recipe, measure_cfg, device, amp))
    return rows


def run_coop_trial(
    config: dict, report: Callable[[dict], None] = print_record, checkpoint_dir: str | None = None
) -> dict:
    """Train and measure one `coop` trial; return {"epochs": EPOCH records, "final": FINAL record with `subnets`}.

    Reports and checkpoints like `harness.trial.run_trial` (the mask logits travel with the teammates' state).
    """
    started_at = utc_now()
    trial_id, seed, epochs = config["trial_id"], int(config["seed"]), int(config["epochs"])
    design, recipe, measure_cfg = config["design"], config["recipe"], config["measure"]
    if recipe.get("mixup_alpha", 0) or recipe.get("cutmix_alpha", 0):
        raise ValueError("the coop class does not support mixup/cutmix (its losses distil hard-label networks)")
    if int(measure_cfg.get("threads", 0)) > 0:
        torch.set_num_threads(int(measure_cfg["threads"]))
    device = pick_device(config.get("resources", {}))
    precision, amp_dtype = resolve_precision(recipe["precision"], device)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    ckpt_path, state = load_checkpoint(checkpoint_dir, trial_id, device)

    data = load_data(
        config["dataset"], device, batch_size=recipe["batch_size"], eval_batch_size=recipe["eval_batch_size"]
    )
    views = make_views(recipe, data)
    gen = torch.Generator(device=device).manual_seed(derived_seed(seed, "views"))
    torch.manual_seed(derived_seed(seed, "torch"))
    nets = build_members({**design, "members": 3}, seed, device, channels_last=False)
    teammates = [DepthMaskedNet(nets[0]).to(device), DepthMaskedNet(nets[1]).to(device)]
    leader = nets[2]
    models = [*teammates, leader]
    # One SGD over the three networks (decay on conv/linear weights) and the mask logits (no decay).
    optimizer = make_optimizer([m.net for m in teammates] + [leader], recipe)
    optimizer.add_param_group({"params": [m.mask_logits for m in teammates], "weight_decay": 0.0})
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    iters_per_epoch = len(data.train_loader) if data.loader else math.ceil(data.num_train / recipe["batch_size"])
    lr_at = lr_schedule(recipe, epochs, iters_per_epoch)
    fmt = torch.contiguous_format

    history, step = [], 0
    if state is not None:
        history, step, started_at = restore_training(state, models, optimizer, scaler, gen, device)

    def train_epoch(epoch: int, step: int) -> tuple[float, int, float, float]:
        train_loss, step, lr = train_one_epoch_coop(
            teammates, leader, optimizer, scaler, data, views, recipe, lr_at, step, gen, device, amp
        )
        return train_loss, step, lr, 0.0

    def evaluate_epoch() -> tuple[float, list[float], float]:
        # The leader is the trial's network; the teammates' full-depth accuracies stand beside it in member_acc.
        bs = recipe["eval_batch_size"]
        lead_acc, _, lead_loss = evaluate([leader], data, "logits", bs, device, amp, fmt)
        _, mate_acc, _ = evaluate([m.net for m in teammates], data, "logits", bs, device, amp, fmt)
        return lead_acc, [*mate_acc, lead_acc], lead_loss

    def save(history: list[dict], step: int) -> None:
        save_training(
            ckpt_path, trial_id, "sequential", models, optimizer, scaler, gen, device, history, step, started_at
        )

    status, error = run_epochs(
        trial_id, epochs, history, step, device, train_epoch, evaluate_epoch, save if ckpt_path else None, report
    )

    memory = measure.peak_memory(device)
    full = [teammates[0].net, teammates[1].net, leader]
    subnets = evaluate_subnets(teammates, leader, data, recipe, measure_cfg, device, amp) if status == "ok" else []
    final = final_record(
        config, full, history, data, memory, device, precision, amp_dtype, status, error, started_at, "sequential"
    )
    final["subnets"] = subnets
    report(final)
    return {"epochs": history, "final": final}
