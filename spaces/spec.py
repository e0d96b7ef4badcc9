"""Sweep specs: TOML files (presets in spaces/presets/) validated before anything runs, turned into trial configs.

A spec names a data set, families with their budget grids, design classes, ensemble sizes, the fit rule, epochs,
seeds, the training recipe, what to measure and the resources per trial. Every key is checked: a typo, a wrong type,
an unknown family or an impossible budget raises `SpecError` with one line naming the key, the bad value and what is
allowed. `--set key=value` overrides any key (dotted path; array elements by index, e.g. `families.0.depths=[8]`).

Recipe precedence, lowest first: built-in defaults, the class defaults below (what divide-and-co-train adds is on for
`dct` only), the spec's `[recipe]` keys, its per-class `[recipe.<class>]` tables, then a `[[families]]` entry's own
`recipe` table (same keys, per-class tables included), which overrides the global one for that entry's designs (a
paper's per-model weight decay). So ablations are just configs: `[recipe.deq] lambda_cot = 0.5` co-trains a
depth-equivalent ensemble. The resolved recipe is part of every trial's config and id.

`fit` is one rule ("floor" or "nearest") or a per-class table, e.g. `fit = { deq = "nearest", weq = "floor" }` (a
class left out fits by floor; `single` matters only for explicit budgets). Designs record the sweep's fit label
("floor", "nearest", or e.g. "deq=nearest,weq=floor") so that analysis groups a sweep's classes together.
`width_granularity = "channel"` sizes deq members by a real width and `depth_granularity = "block"` weq members by
per-stage block counts (`spaces.designs`); both are refused, in one line, for a family that cannot build them.

The `mutual` class (MutualNet) has its own recipe keys (`MUTUAL_KEYS`: the width range, the input resolutions, the
grid step of the evaluated widths, the BN recalibration samples); they may sit in `[recipe]` or `[recipe.mutual]` and
reach only the mutual trials' recipes, so adding them changes no other trial's id. The `coop` class (cooperative
depth-adaptive training) likewise has `COOP_KEYS` (the scaling factors, the Gumbel temperature) for coop trials only.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spaces import designs as design_builders
from spaces.classes import CLASSES, DESIGN_CLASSES, FIXED_CLASSES
from spaces.datasets import DATASETS
from spaces.designs import (
    DEPTH_GRANULARITIES,
    FIT_RULES,
    WIDTH_GRANULARITIES,
    BudgetError,
    DesignPoint,
    Shape,
    single_at,
    single_for_budget,
)
from spaces.families import get_family, list_families
from spaces.families.depthmask import DEPTH_MASKABLE_FAMILIES
from spaces.families.slimmable import SLIMMABLE_FAMILIES

PRESET_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "digits"

# Divide-and-Co-train trains members on their own views with a JS co-training loss; More-or-Less trained members
# independently on one view. Reference run length for scaling the co-training warm-up: DCT's 300 CIFAR epochs.
CLASS_DEFAULTS = {
    **{cls: {"lambda_cot": 0.0, "member_views": False, "divide_regularization": False} for cls in DESIGN_CLASSES},
    "dct": {"lambda_cot": 0.5, "member_views": True, "divide_regularization": True},
}
COT_WARMUP_REFERENCE = (40, 300)  # 40 warm-up epochs in a 300-epoch run


class SpecError(ValueError):
    """A spec that cannot run; the message is one line naming the key, the value and what is allowed."""


_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One spec key: its type ('int', 'float', 'bool', 'str', or 'list[...]'), default and constraint."""

    type: str
    default: Any = _REQUIRED
    allowed: tuple | None = None
    check: Any = None  # callable(value) -> None or a text saying what is allowed


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _fraction(v):
    return None if 0 < v < 1 else "must be between 0 and 1 (exclusive)"


def _probability(v):
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def _each(check):
    def run(values):
        for v in values:
            problem = check(v)
            if problem:
                return f"every element {problem}"
        return None

    return run


def _non_empty(values):
    return None if values else "must not be empty"


def _name(v):
    return None if re.fullmatch(r"[A-Za-z0-9_.-]+", v) else "must use only letters, digits, '_', '-' and '.'"


DATASET_KEYS = {
    # data set
    "name": Key("str", allowed=tuple(DATASETS)),
    # local folder of the data set (relative to the current directory)
    "root": Key("str", "data"),
    # let torchvision download a missing data set
    "download": Key("bool", False),
    # training input side in pixels (default per data set)
    "image_size": Key("int", None, check=_positive),
    # held-out share for data sets without a test split
    "test_fraction": Key("float", 0.25, check=_fraction),
    # seed of the fixed train/test split
    "split_seed": Key("int", 0),
}

FAMILY_KEYS = {
    # model family
    "name": Key("str", allowed=None),  # allowed filled from the registry at validation
    # single-network depths of the grid
    "depths": Key("list[int]", None, check=_non_empty),
    # single-network widths of the grid (family's knob)
    "widths": Key("list[int]", None, check=_non_empty),
    # explicit parameter budgets instead of a grid
    "budgets": Key("list[float]", None, check=_each(_positive)),
    # builder options of the family, e.g. drop_rate
    "options": Key("table", {}),
    # recipe keys for this entry's designs, over the global [recipe]
    "recipe": Key("table", {}),
}

RECIPE_KEYS = {
    "optimizer": Key("str", "sgd", allowed=("sgd",)),
    # peak learning rate
    "lr": Key("float", 0.1, check=_positive),
    "momentum": Key("float", 0.9, check=_probability),
    "nesterov": Key("bool", True),
    # on conv/linear weights only
    "weight_decay": Key("float", 5e-4, check=_non_negative),
    # dct weight-decay division
    "wd_policy": Key("str", "none", allowed=("none", "exp", "linear")),
    "schedule": Key("str", "cosine", allowed=("cosine", "step")),
    # linear learning-rate warm-up
    "warmup_epochs": Key("int", 0, check=_non_negative),
    # step schedule epochs (default 50% and 75%)
    "milestones": Key("list[int]", [], check=_each(_positive)),
    # step schedule factor
    "gamma": Key("float", 0.1, check=_positive),
    "batch_size": Key("int", 128, check=_positive),
    "eval_batch_size": Key("int", 512, check=_positive),
    "label_smoothing": Key("float", 0.0, check=_probability),
    # co-training (JS) weight; 0.5 for dct, 0 otherwise
    "lambda_cot": Key("float", None, check=_non_negative),
    # lambda_cot warm-up; 40 scaled to run length
    "cot_warmup_epochs": Key("int", None, check=_non_negative),
    # lambda_cot floor during warm-up
    "cot_floor": Key("float", 0.005, check=_non_negative),
    # each member its own augmentation (dct default)
    "member_views": Key("bool", None),
    # divide dropout/ShakeDrop by sqrt(S) (dct default)
    "divide_regularization": Key("bool", None),
    "crop_padding": Key("int", 4, check=_non_negative),
    "flip": Key("bool", True),
    "autoaugment": Key("bool", False),
    "randaugment": Key("bool", False),
    # RandomErasing probability
    "random_erasing": Key("float", 0.0, check=_probability),
    "mixup_alpha": Key("float", 0.0, check=_non_negative),
    "cutmix_alpha": Key("float", 0.0, check=_non_negative),
    # autocast dtype on CUDA
    "precision": Key("str", "fp32", allowed=("fp32", "bf16", "fp16")),
    # channels_last memory format on CUDA
    "channels_last": Key("bool", False),
    # CUDA: cuDNN times its convolution algorithms (first epoch) and keeps the fastest
    "cudnn_benchmark": Key("bool", True),
    # ensemble combiner
    "combine": Key("str", "logits", allowed=("logits", "softmax", "geometric", "max")),
    # how members run
    "execution": Key("str", "sequential", allowed=("sequential", "fused", "auto")),
    # torch.compile mode of the members' forward ("off": eager), the same names as torch.compile's; harness.fused
    # checks the pair (only inductor has modes). "reduce-overhead" adds CUDA graphs. Backend "cudagraphs" records CUDA
    # graphs without inductor's kernels; "aot_eager" is torch's debugging backend (traces and runs autograd ahead of
    # time, eager kernels): it shows whether a problem comes from capture or from inductor.
    "compile": Key(
        "str",
        "off",
        allowed=("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    ),
    # torch.compile backend
    "compile_backend": Key("str", "inductor", allowed=("inductor", "cudagraphs", "aot_eager")),
    # Opt in to inductor's C++ kernels on a CPU (compile with backend "inductor" and resources.gpus = 0). Off by
    # default: they aborted the process with heap corruption on some hosts (torch 2.14.1 on an AVX-512 Xeon with 2
    # threads, 2.15.0 with 1), and whether they do depends on the process's history, so no probe can clear a host.
    # "aot_eager" captures the same graphs with eager kernels and runs everywhere.
    "inductor_cpu": Key("bool", False),
    # Data-parallel trials (resources.parallel = "data"): BatchNorm statistics over the whole global batch, across
    # workers (the DCT code's option); with it a data-parallel step equals the one-device step. No effect otherwise.
    "sync_bn": Key("bool", False),
}


def _width_range(v):
    if len(v) != 2 or not 0 < v[0] <= v[1] <= 1:
        return "must be [min, max] with 0 < min <= max <= 1 (width multipliers)"
    return None


def _step(v):
    return None if 0 < v <= 1 else "must be in (0, 1]"


# MutualNet (class `mutual`) only. `resolutions` defaults to 1, 7/8, 3/4 and 5/8 of the data set's image size.
MUTUAL_KEYS = {
    # width multiplier range [min, max]
    "widths": Key("list[float]", [0.25, 1.0], check=_width_range),
    # input sides (px) the sub-networks train on
    "resolutions": Key("list[int]", None, check=_non_empty),
    # step of the evaluated width grid over the range
    "width_step": Key("float", 0.05, check=_step),
    # training samples per BN recalibration
    "bn_calib_samples": Key("int", 2048, check=_positive),
}


def _scales(v):
    if not v or any(not 0 < s <= 1 for s in v):
        return "must be a non-empty list of scaling factors in (0, 1]"
    return None if len(set(v)) == len(v) else "must not repeat a scaling factor"


# Cooperative depth-adaptive training (class `coop`) only.
COOP_KEYS = {
    # sub-network scaling factors
    "scales": Key("list[float]", [0.2, 0.4, 0.6, 0.8, 1.0], check=_scales),
    # temperature of the Gumbel top-k block mask
    "gumbel_tau": Key("float", 1.0, check=_positive),
}
# Recipe keys that reach only the trials of their class.
CLASS_KEYS = {"mutual": MUTUAL_KEYS, "coop": COOP_KEYS}
RECIPE_ALL_KEYS = {**RECIPE_KEYS, **MUTUAL_KEYS, **COOP_KEYS}


def _class_keys(design_class: str) -> dict:
    """Return the recipe keys a trial of `design_class` takes: the common ones and its class's own."""
    return {**RECIPE_KEYS, **CLASS_KEYS.get(design_class, {})}


MEASURE_KEYS = {
    # untimed inference runs before timing
    "latency_warmup": Key("int", 5, check=_non_negative),
    # timed batch-1 inference runs
    "latency_runs": Key("int", 30, check=_positive),
    # batch size of the throughput measurement
    "throughput_batch": Key("int", 256, check=_positive),
    # torch intra-op threads per trial (0: torch's default)
    "threads": Key("int", 0, check=_non_negative),
    # after the trials, measure every design point's costs alone (harness.cost_pass; the costs table)
    "cost_pass": Key("bool", True),
}

RESOURCE_KEYS = {
    # CPUs per trial
    "cpus": Key("float", 1.0, check=_positive),
    # GPUs per trial (whole GPUs unless fractional_gpu)
    "gpus": Key("float", 0.0, check=_non_negative),
    # allow sharing a GPU; rows then say the device was shared
    "fractional_gpu": Key("bool", False),
    # trials packed on one GPU (each asks Ray for gpus / N of it; needs gpus = 1); the cost pass measures alone
    "trials_per_gpu": Key("int", 1, check=_positive),
    # trials packed on one group of `cpus` cores (each asks Ray for cpus / N; needs measure.threads > 0)
    "trials_per_cpu_group": Key("int", 1, check=_positive),
    # Ray Train workers per trial on CPUs, `cpus` each (on GPUs the workers are resources.gpus, one GPU each)
    "workers": Key("int", 1, check=_positive),
    # how a trial spans its workers: "none" (one device), "data" (DDP, the global batch split over the workers),
    # "members" (ensembles: an equal share of the members per worker, each with its own optimizer); or a per-class
    # table such as { dct = "members", single = "data" }
    "parallel": Key("str|table", "none"),
}
# Values of resources.parallel.
PARALLEL_MODES = ("none", "data", "members")

TOP_KEYS = {
    # sweep name; partitions the results store
    "name": Key("str", check=_name),
    "description": Key("str", ""),
    # [dataset] table
    "dataset": Key("table"),
    # [[families]] tables
    "families": Key("array"),
    "classes": Key("list[str]", list(FIXED_CLASSES), allowed=DESIGN_CLASSES, check=_non_empty),
    # ensemble sizes k (and S for dct)
    "members": Key("list[int]", [4], check=_non_empty),
    # "floor", "nearest", or a per-class table like { deq = "nearest" }
    "fit": Key("str|table", "floor"),
    # skip, instead of rejecting, ensembles that cannot fit their budget
    "skip_unfit": Key("bool", False),
    # deq member width: "knob" (the family's integer knob, as the papers) or "channel" (a real width, each stage
    # rounded to whole channels; see the family's file)
    "width_granularity": Key("str", "knob", allowed=WIDTH_GRANULARITIES),
    # weq member depth: "valid" (the family's valid depths) or "block" (stages of different block counts)
    "depth_granularity": Key("str", "valid", allowed=DEPTH_GRANULARITIES),
    # Our choice: 10% is where the dry runs showed ensembles comparing at a visibly smaller size.
    # designs further from their budget (%) are kept but marked where compared
    "max_budget_deviation_pct": Key("float", 10.0, check=_positive),
    "epochs": Key("int", check=_positive),
    # a list of seeds (each point runs them all), or an adaptive policy { min = 2, max = 8 } (SEED_POLICY_KEYS)
    "seeds": Key("list[int]|table", [0], check=lambda v: _non_empty(v) if isinstance(v, list) else None),
    # how the analysis decides a cell (VERDICT_KEYS)
    "verdicts": Key("table", {}),
    "recipe": Key("table", {}),
    "measure": Key("table", {}),
    "resources": Key("table", {}),
}


# The adaptive seed policy: every design point starts with seeds 0..min-1; after that round the points whose cells
# decide the EST and are unresolved get more seeds at the looks (seed counts fixed in advance), up to max.
SEED_POLICY_KEYS = {
    "min": Key("int", 2, check=lambda v: None if v >= 2 else "must be >= 2 (a test needs 2 seeds per class)"),
    "max": Key("int", 8, check=_positive),
    # seed counts at which the open cells are looked at again; default: every 2 seeds from min + 2, and max
    "looks": Key("list[int]", None),
}
# Mirrors analysis.est (spaces imports no analysis; a test checks they agree).
VERDICT_RULES = ("welch", "std", "ci95")
ERROR_CONTROLS = ("bh", "holm", "none")
VERDICT_KEYS = {
    # "welch": a test per cell (wins / loses / equivalent / unresolved); "std", "ci95": the old overlap rules
    "rule": Key("str", "welch", allowed=VERDICT_RULES),
    # Our choice, the usual one: a 5% error level per verdict (split over the looks of an adaptive policy).
    "alpha": Key("float", 0.05, check=lambda v: None if 0 < v < 1 else "must lie in (0, 1)"),
    # Our choice: half a point of accuracy; two classes closer than this are equivalent (percentage points).
    "equivalence_pp": Key("float", 0.5, check=_positive),
    # multiplicity control over each epoch's cells: Benjamini-Hochberg, Holm, or none
    "error_control": Key("str", "bh", allowed=ERROR_CONTROLS),
}


def _seed_policy(value: dict) -> dict:
    """Return the validated adaptive seed policy (min, max, looks: the seed counts of every look after the first)."""
    policy = _validate_table(value, SEED_POLICY_KEYS, "seeds.")
    if policy["max"] < policy["min"]:
        raise _fail("seeds.max", policy["max"], f"must be >= seeds.min ({policy['min']})")
    looks = policy["looks"]
    if looks is None:
        looks = sorted({*range(policy["min"] + 2, policy["max"], 2), policy["max"]} - {policy["min"]})
    elif any(b <= a for a, b in zip([policy["min"], *looks], looks, strict=False)) or looks[-1:] != [policy["max"]]:
        raise _fail("seeds.looks", looks, f"must increase from above seeds.min ({policy['min']}) and end at "
                                          f"seeds.max ({policy['max']})")  # fmt: skip
    policy["looks"] = list(looks)
    return policy


def _fmt(value) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


def _fail(key: str, value, problem: str) -> SpecError:
    return SpecError(f"{key} = {_fmt(value)}: {problem}")


def _type_ok(kind: str, value) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "str|table":
        return isinstance(value, str | dict)
    if kind == "list[int]|table":
        return isinstance(value, dict) or _type_ok("list[int]", value)
    if kind == "array":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, list) and all(_type_ok(inner, v) for v in value)
    raise AssertionError(kind)


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "table": "a table",
    "array": "an array of tables",
    "str|table": "a string or a table",
    "list[int]|table": "a list of integers or a table",
}


def _type_word(kind: str) -> str:
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind.startswith("list["):
        return f"a list of {_TYPE_WORDS[kind[5:-1]].split(' ', 1)[1]}s"
    return _TYPE_WORDS[kind]


def _check_unknown(data: dict, keys: dict, where: str, extra: tuple = ()) -> None:
    for key in data:
        if key not in keys and key not in extra:
            known = sorted([*keys, *extra])
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(f"{where}{key}", data[key], f"unknown key{hint}; allowed keys: {', '.join(known)}")


def _validate_table(data: dict, keys: dict, where: str, extra: tuple = ()) -> dict:
    """Return `data` with defaults filled in; raise SpecError on unknown keys, wrong types and bad values."""
    _check_unknown(data, keys, where, extra)
    out = {}
    for key, spec in keys.items():
        path = f"{where}{key}"
        if key not in data:
            if spec.default is _REQUIRED:
                raise SpecError(f"{path}: missing; it is required")
            out[key] = copy.deepcopy(spec.default)
            continue
        value = data[key]
        if not _type_ok(spec.type, value):
            raise _fail(path, value, f"must be {_type_word(spec.type)}")
        if spec.type == "float":
            value = float(value)
        if spec.allowed is not None:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item not in spec.allowed:
                    raise _fail(path, value, "not allowed; allowed: " + ", ".join(map(_fmt, spec.allowed)))
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise _fail(path, value, problem)
        out[key] = value
    for key in extra:
        if key in data:
            out[key] = data[key]
    return out


def _builder_options(family_name: str) -> set[str]:
    family = get_family(family_name)
    params = inspect.signature(family.builder).parameters
    # stage_blocks is the design's (depth_granularity = "block"), not a spec option.
    set_by_design = ("depth", "width", "num_classes", "in_chans", "stage_blocks")
    return {p for p in params if p not in set_by_design} | set(family.options)


def _validate_family(entry: dict, where: str) -> dict:
    fam = _validate_table(entry, FAMILY_KEYS, where)
    if fam["name"] not in list_families():
        raise _fail(f"{where}name", fam["name"], "unknown family; allowed: " + ", ".join(map(_fmt, list_families())))
    family = get_family(fam["name"])
    allowed_options = _builder_options(fam["name"])
    for opt, value in fam["options"].items():
        if opt not in allowed_options:
            raise _fail(
                f"{where}options.{opt}",
                value,
                f"unknown option of {fam['name']}; allowed: {', '.join(sorted(allowed_options)) or 'none'}",
            )
        rule = family.option_rules.get(opt)
        problem = rule(value) if rule else None
        if problem:
            raise _fail(f"{where}options.{opt}", value, problem)
    if fam["depths"] is None:
        fam["depths"] = [family.default_depth]
    for depth in fam["depths"]:
        if not family.is_valid_depth(depth):
            raise _fail(
                f"{where}depths",
                fam["depths"],
                f"depth {depth} is not valid for {fam['name']}; valid depths: {family.depth_rule_text()}",
            )
    if fam["budgets"] is not None:
        if fam["widths"] is not None:
            raise _fail(f"{where}widths", fam["widths"], "give either widths (a grid) or budgets, not both")
        if len(fam["depths"]) != 1:
            raise _fail(f"{where}depths", fam["depths"], "with explicit budgets give exactly one depth")
    else:
        if fam["widths"] is None:
            fam["widths"] = [family.default_width]
        for width in fam["widths"]:
            if width < family.min_width:
                raise _fail(
                    f"{where}widths",
                    fam["widths"],
                    f"{family.width_knob} must be >= {family.min_width} for {fam['name']}",
                )
    return fam


def _resolve_recipe(spec: dict, design_class: str, members: int, family_index: int | None = None) -> dict:
    """Return the recipe of one design class: defaults < class defaults < [recipe] < [recipe.<class>] < the
    `families.<family_index>.recipe` table < its `<class>` table."""
    recipe = {k: v.default for k, v in RECIPE_KEYS.items()}
    recipe.update(CLASS_DEFAULTS[design_class])
    keys = _class_keys(design_class)
    recipe.update({k: v.default for k, v in CLASS_KEYS.get(design_class, {}).items()})
    for raw in _raw_recipes(spec, family_index):
        recipe.update({k: v for k, v in raw.items() if k in keys})
        recipe.update(raw.get(design_class, {}))
    recipe = copy.deepcopy(recipe)
    epochs = spec["epochs"]
    if design_class == "mutual" and recipe["resolutions"] is None:
        side = spec["dataset"]["image_size"]
        recipe["resolutions"] = sorted({max(1, round(side * f)) for f in (1, 7 / 8, 3 / 4, 5 / 8)}, reverse=True)
    if recipe["cot_warmup_epochs"] is None:
        ref_warmup, ref_epochs = COT_WARMUP_REFERENCE
        recipe["cot_warmup_epochs"] = min(ref_warmup, round(ref_warmup * epochs / ref_epochs))
    if not recipe["milestones"]:
        recipe["milestones"] = [max(1, epochs // 2), max(1, (3 * epochs) // 4)]
    recipe["weight_decay_base"] = recipe["weight_decay"]
    if design_class == "dct" and recipe["wd_policy"] == "exp":
        recipe["weight_decay"] = recipe["weight_decay"] * math.exp(1.0 / members - 1.0)
    elif design_class == "dct" and recipe["wd_policy"] == "linear":
        recipe["weight_decay"] = recipe["weight_decay"] / members
    return recipe


def _raw_recipes(spec: dict, family_index: int | None) -> list[dict]:
    """Return the explicitly given recipe tables that apply to a design of `families.<family_index>`, lowest first."""
    if family_index is None:
        return [spec["_raw_recipe"]]
    return [spec["_raw_recipe"], spec["families"][family_index]["_raw_recipe"]]


def _validate_recipe(raw: dict, epochs: int, where: str = "recipe.") -> dict:
    """Return the explicitly given recipe keys, validated and normalised, with per-class tables under their class."""
    top = _validate_table(raw, RECIPE_ALL_KEYS, where, extra=DESIGN_CLASSES)
    raw = {**{k: top[k] for k in raw if k in RECIPE_ALL_KEYS}, **{c: raw[c] for c in DESIGN_CLASSES if c in raw}}
    for cls in DESIGN_CLASSES:
        if cls in raw:
            if not isinstance(raw[cls], dict):
                raise _fail(f"{where}{cls}", raw[cls], "must be a table of recipe keys")
            sub = _validate_table(raw[cls], _class_keys(cls), f"{where}{cls}.")
            raw[cls] = {k: sub[k] for k in raw[cls]}
    for at, table in [(where, raw)] + [(f"{where}{c}.", raw[c]) for c in DESIGN_CLASSES if c in raw]:
        for m in table.get("milestones", []):
            if m > epochs:
                raise _fail(f"{at}milestones", table["milestones"], f"milestones must be <= epochs ({epochs})")
    return raw


@dataclass
class Spec:
    """A validated sweep spec and the design points it enumerates (in a stable order)."""

    name: str
    source: str
    data: dict
    designs: list[DesignPoint]
    skipped: list[str] = field(default_factory=list)
    # families.<i> entry each design came from (its recipe table applies), parallel to `designs`.
    design_families: list[int] = field(default_factory=list)


def preset_path(name: str) -> Path:
    """Return the path of the preset spec `name` (a file in spaces/presets/)."""
    return PRESET_DIR / f"{name}.toml"


def list_presets() -> list[str]:
    """Return the names of the bundled preset specs, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string, as on most command lines


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `key=value` override (dotted key, TOML value) to the raw spec dict in place."""
    if "=" not in assignment:
        raise SpecError(f"--set {assignment!r}: expected key=value, e.g. epochs=3 or recipe.lr=0.05")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"--set {key}: {where} indexes a list of {len(node)} entries; use 0..{len(node) - 1}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise SpecError(f"--set {key}: {where} is {_fmt(node)}, not a table")
    if isinstance(node, list):
        raise SpecError(f"--set {key}: cannot replace a whole list entry; set one of its keys")
    node[parts[-1]] = _parse_value(text.strip())


def load_spec(spec: str | Path = DEFAULT_PRESET, overrides: list[str] | tuple = ()) -> Spec:
    """Return the validated Spec from a TOML file or a preset name, after `key=value` overrides.

    Raises SpecError (one line: key, value, what is allowed) for anything that cannot run, including a budget too
    small for an ensemble class (unless `skip_unfit`), before any training or Ray starts.
    """
    path = Path(spec)
    if not path.suffix and not path.exists():
        if str(spec) not in list_presets():
            raise SpecError(f"--spec {_fmt(str(spec))}: no such file or preset; presets: {', '.join(list_presets())}")
        path = preset_path(str(spec))
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"--spec {_fmt(str(spec))}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: TOML syntax error: {err}") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    data = _validate(raw)
    designs, skipped, families = _enumerate(data)
    return Spec(
        name=data["name"], source=str(path), data=data, designs=designs, skipped=skipped, design_families=families
    )


def _validate(raw: dict) -> dict:
    data = _validate_table(raw, TOP_KEYS, "")
    data["dataset"] = _validate_table(data["dataset"], DATASET_KEYS, "dataset.")
    info = DATASETS[data["dataset"]["name"]]
    if data["dataset"]["image_size"] is None:
        data["dataset"]["image_size"] = info.image_size
    data["dataset"]["root"] = str(Path(data["dataset"]["root"]).expanduser().resolve())
    if not data["families"]:
        raise _fail("families", [], "at least one [[families]] table is required")
    data["families"] = [_validate_family(f, f"families.{i}.") for i, f in enumerate(data["families"])]
    for k in data["members"]:
        if k < 2:
            raise _fail("members", data["members"], "ensembles need at least 2 members; single is its own class")
    data["fit"] = _validate_fit(data["fit"])
    data["_raw_recipe"] = _validate_recipe(copy.deepcopy(data["recipe"]), data["epochs"])
    for i, fam in enumerate(data["families"]):
        fam["_raw_recipe"] = _validate_recipe(copy.deepcopy(fam["recipe"]), data["epochs"], f"families.{i}.recipe.")
    side = data["dataset"]["image_size"]
    raws = [("recipe.", data["_raw_recipe"])]
    raws += [(f"families.{i}.recipe.", f["_raw_recipe"]) for i, f in enumerate(data["families"])]
    tables = [t for where, raw in raws for t in ((where, raw), (f"{where}mutual.", raw.get("mutual", {})))]
    for where, table in tables:
        for r in table.get("resolutions") or []:
            if not 0 < r <= side:
                raise _fail(
                    f"{where}resolutions", table["resolutions"], f"every resolution must be in 1..{side} (image_size)"
                )
    _check_granularity(data)
    _check_compile(data)
    _check_mixing(data)
    data["measure"] = _validate_table(data["measure"], MEASURE_KEYS, "measure.")
    if isinstance(data["seeds"], dict):
        data["seed_policy"] = _seed_policy(data["seeds"])
        data["seeds"] = list(range(data["seed_policy"]["min"]))  # the first round; later looks add seeds
    else:
        data["seed_policy"] = None
    data["verdicts"] = _validate_table(data["verdicts"], VERDICT_KEYS, "verdicts.")
    # Every seed count a verdict is read at (the first round and each look) spends part of alpha.
    policy = data["seed_policy"]
    data["verdicts"]["looks"] = [policy["min"], *policy["looks"]] if policy else []
    data["resources"] = _validate_table(data["resources"], RESOURCE_KEYS, "resources.")
    gpus = data["resources"]["gpus"]
    if gpus != int(gpus) and not data["resources"]["fractional_gpu"]:
        raise _fail("resources.gpus", gpus, "fractional GPUs need resources.fractional_gpu = true (timings shared)")
    if gpus == 0:
        _check_inductor_cpu(data)
    _check_packing(data)
    _check_parallel(data)
    return data


def train_workers(resources: dict) -> int:
    """Return how many Ray Train workers a trial with these resources runs on: `gpus` when it asks for 2 or more
    GPUs (one each), else `workers` (CPU processes); 1 means one process, no Ray Train."""
    gpus = float(resources.get("gpus", 0) or 0)
    return int(gpus) if gpus >= 2 else int(resources.get("workers", 1) or 1)


def trial_workers(config: dict) -> int:
    """Return how many Ray Train workers a trial config runs on (its resolved `resources.workers`; 1: one process)."""
    return int((config.get("resources") or {}).get("workers", 1) or 1)


def parallel_mode(resources: dict, design_class: str) -> str:
    """Return the parallel mode ("none", "data" or "members") of `design_class` under a spec's validated resources
    (a per-class table leaves a class out as "none")."""
    mode = resources.get("parallel", "none")
    return mode if isinstance(mode, str) else mode.get(design_class, "none")


def _check_parallel(data: dict) -> None:
    """Raise SpecError unless every class of the sweep can run as its `resources.parallel` mode asks on the trial's
    workers: N >= 2 workers need a mode for every class (else they would idle), a mode needs N >= 2, members-parallel
    needs an ensemble of the fixed kind whose every size N divides, trained sequentially; the parallel trial is one
    group of workers (no packing, no shared GPU, no compile)."""
    res = data["resources"]
    mode = res["parallel"]
    if isinstance(mode, str):
        if mode not in PARALLEL_MODES:
            raise _fail("resources.parallel", mode, "not allowed; allowed: " + ", ".join(map(_fmt, PARALLEL_MODES))
                        + ', or a per-class table such as { dct = "members", single = "data" }')  # fmt: skip
    else:
        for cls, value in mode.items():
            if cls not in data["classes"]:
                raise _fail(f"resources.parallel.{cls}", value, "not a class of this sweep; classes: "
                            + ", ".join(data["classes"]))  # fmt: skip
            if value not in PARALLEL_MODES:
                raise _fail(f"resources.parallel.{cls}", value,
                            "not allowed; allowed: " + ", ".join(map(_fmt, PARALLEL_MODES)))  # fmt: skip
    gpus, workers = res["gpus"], res["workers"]
    if workers > 1 and gpus > 0:
        raise _fail("resources.workers", workers, f"on GPUs the workers are resources.gpus, one GPU each; set gpus = "
                    f"{workers} and leave out workers (workers counts CPU processes, with gpus = 0)")  # fmt: skip
    n = train_workers(res)
    shown = int(gpus) if gpus == int(gpus) else gpus
    key, value = ("resources.gpus", shown) if gpus >= 2 else ("resources.workers", workers)
    modes = {cls: parallel_mode(res, cls) for cls in data["classes"]}
    if n >= 2:
        idle = [cls for cls, m in modes.items() if m == "none"]
        if idle:
            device = "GPUs" if gpus >= 2 else "workers"
            raise _fail(key, value, f"{'class ' + idle[0] if not isinstance(mode, str) else 'a trial'} would train on "
                        f'one of its {n} {device}; set resources.parallel = "data" (DDP over the {n}), or "members" '
                        f"for ensembles, or {'gpus = 1' if gpus >= 2 else 'workers = 1'}")  # fmt: skip
    elif any(m != "none" for m in modes.values()):
        used = next(m for m in modes.values() if m != "none")
        raise _fail("resources.parallel", mode, f"{used}-parallel needs resources.workers >= 2 (CPU processes) or "
                    "resources.gpus >= 2")  # fmt: skip
    if n < 2:
        return
    if gpus != int(gpus):
        raise _fail("resources.gpus", gpus, "a parallel trial uses whole GPUs, one per worker")
    for name in ("trials_per_gpu", "trials_per_cpu_group"):
        if res[name] > 1:
            raise _fail(f"resources.{name}", res[name], "packing is for one-device trials; a parallel trial holds "
                        "its workers' devices")  # fmt: skip
    if res["fractional_gpu"]:
        raise _fail("resources.fractional_gpu", True, "a parallel trial holds whole devices, one per worker")
    fixed = [c for c in DESIGN_CLASSES if CLASSES[c].trial_kind == "fixed"]
    ensembles = ", ".join(c for c in fixed if CLASSES[c].ensemble)
    for cls, m in modes.items():
        if m == "members":
            if not CLASSES[cls].ensemble or CLASSES[cls].trial_kind != "fixed":
                raise _fail(f"resources.parallel{'' if isinstance(mode, str) else '.' + cls}", m,
                            f"{cls} is not an ensemble of separate networks; members-parallel is for {ensembles}; "
                            f'give {cls} "data", e.g. parallel = {{ dct = "members", {cls} = "data" }}')  # fmt: skip
            for k in data["members"]:
                if k % n:
                    raise _fail("members", data["members"], f"members-parallel over {n} workers needs every ensemble "
                                f"size to be a multiple of {n} (each worker trains an equal share)")  # fmt: skip
        elif CLASSES[cls].trial_kind != "fixed":
            raise _fail(f"resources.parallel{'' if isinstance(mode, str) else '.' + cls}", m,
                        f"{cls} trials train on one device (parallel trials are built for "
                        f"{', '.join(fixed)})")  # fmt: skip
    for i, cls in _class_scopes(data):
        m = modes[cls]
        execution, at = _effective(data, cls, "execution", i)
        if m == "members" and execution == "fused":
            raise _fail(at, execution, "members-parallel trains each worker's members one after another; set "
                        'execution = "sequential"')  # fmt: skip
        if m == "data" and execution == "fused":
            raise _fail(at, execution, 'data-parallel trials run their members sequentially; set execution = '
                        '"sequential"')  # fmt: skip
        compile_mode, at = _effective(data, cls, "compile", i)
        if compile_mode != "off":
            raise _fail(at, compile_mode, f'parallel trials ({m}) run eagerly; set compile = "off"')


def _check_packing(data: dict) -> None:
    """Raise SpecError unless the packing keys can be honoured: trials_per_gpu packs one whole GPU (gpus = 1), and
    trials packed on a CPU core group say how many threads each runs (Ray would otherwise give each the threads of its
    fractional share)."""
    res = data["resources"]
    if res["trials_per_gpu"] > 1 and res["gpus"] != 1:
        raise _fail("resources.trials_per_gpu", res["trials_per_gpu"],
                    f"packs trials on one GPU; it needs resources.gpus = 1 (it is {res['gpus']:g})")  # fmt: skip
    if res["trials_per_cpu_group"] > 1 and data["measure"]["threads"] == 0:
        raise _fail("resources.trials_per_cpu_group", res["trials_per_cpu_group"],
                    "packed CPU trials need measure.threads > 0 (the torch threads each trial runs with)")  # fmt: skip


FIT_CLASSES = ("single", "deq", "weq")  # the classes a fit rule sizes (single: only under explicit budgets)


def _validate_fit(fit):
    """Return the validated `fit`: one rule name, or a {class: rule} table (classes FIT_CLASSES)."""
    if isinstance(fit, str):
        if fit not in FIT_RULES:
            allowed = ", ".join(map(_fmt, FIT_RULES)) + ", or a per-class table such as { deq = 'nearest' }"
            raise _fail("fit", fit, f"not allowed; allowed: {allowed}")
        return fit
    _check_unknown(fit, dict.fromkeys(FIT_CLASSES), "fit.")
    for cls, rule in fit.items():
        if rule not in FIT_RULES:
            raise _fail(f"fit.{cls}", rule, "not allowed; allowed: " + ", ".join(map(_fmt, FIT_RULES)))
    return dict(fit)


def fit_rule(fit, design_class: str) -> str:
    """Return the fit rule ("floor" or "nearest") that sizes `design_class` under the spec's `fit`."""
    return fit if isinstance(fit, str) else fit.get(design_class, "floor")


def fit_label(fit) -> str:
    """Return the sweep's fit label that designs record: the rule, or e.g. "deq=nearest,weq=floor" for a table."""
    if isinstance(fit, str):
        return fit
    return ",".join(f"{cls}={fit[cls]}" for cls in FIT_CLASSES if cls in fit) or "floor"


def _effective(data: dict, cls: str, key: str, family_index: int | None = None) -> tuple[Any, str]:
    """Return (the value recipe key `key` takes for class `cls` in families.<family_index> (None: the global recipe
    alone), the spec key that sets it): the family's [recipe.<cls>] over its [recipe] over the global
    [recipe.<cls>] over [recipe] over the default."""
    value, where = RECIPE_KEYS[key].default, f"recipe.{key}"
    prefixes = ("recipe.", f"families.{family_index}.recipe.")
    for prefix, raw in zip(prefixes, _raw_recipes(data, family_index), strict=False):
        for src, at in ((raw, prefix), (raw.get(cls, {}), f"{prefix}{cls}.")):
            if key in src:
                value, where = src[key], f"{at}{key}"
    return value, where


def _class_scopes(data: dict) -> list[tuple[int | None, str]]:
    """Return (family index or None for the global recipe, class) for every recipe scope a check must look at."""
    return [(i, cls) for i in [None, *range(len(data["families"]))] for cls in data["classes"]]


def _check_granularity(data: dict) -> None:
    """Raise SpecError when a granularity other than the default is asked of a family that cannot build it (and the
    class it sizes is in the sweep)."""
    asks = (("width_granularity", "channel", "deq", "real_width", "real widths"),
            ("depth_granularity", "block", "weq", "block_depths", "stages of different block counts"))  # fmt: skip
    for key, value, cls, supports, what in asks:
        if data[key] != value or cls not in data["classes"]:
            continue
        able = [name for name in list_families() if getattr(get_family(name), supports)]
        for i, fam in enumerate(data["families"]):
            if not getattr(get_family(fam["name"]), supports):
                raise _fail(key, value, f"families.{i} ({fam['name']}) builds no {what}; "
                            f"families that do: {', '.join(able)}")  # fmt: skip


def _check_compile(data: dict) -> None:
    """Raise SpecError when a class's effective (compile, compile_backend) cannot run: a mode other than "default"
    with a non-inductor backend, or any compilation for an adaptive class (one with sub-networks in
    `spaces.classes`; they train eagerly), in the global recipe or any family's."""
    for i, cls in _class_scopes(data):
        mode, key = _effective(data, cls, "compile", i)
        backend, _ = _effective(data, cls, "compile_backend", i)
        if mode == "off":
            continue
        if CLASSES[cls].subnet_kind is not None:
            raise _fail(key, mode, f'{cls} trials run eagerly; set recipe.{cls}.compile = "off"')
        if backend != "inductor" and mode != "default":
            raise _fail(key, mode, f'backend {backend!r} has no modes; use "default" (modes are inductor\'s)')


def inductor_cpu_refusal(where: str) -> str:
    """Return the one-line reason (after "<key> = <value>: ") why inductor on a CPU is refused without the opt-in;
    `where` names the recipe scope of the opt-in key ("recipe." or e.g. "families.0.recipe.deq.")."""
    return (
        f"inductor's C++ kernels on a CPU have aborted the process on some hosts; set compile_backend = \"aot_eager\""
        f" (same graphs, eager kernels), or {where}inductor_cpu = true to run them anyway"
    )


def _check_inductor_cpu(data: dict) -> None:
    """Raise SpecError when a class of a CPU sweep (resources.gpus = 0) compiles with inductor without the recipe's
    `inductor_cpu = true`, in the global recipe or any family's."""
    for i, cls in _class_scopes(data):
        mode, key = _effective(data, cls, "compile", i)
        backend, _ = _effective(data, cls, "compile_backend", i)
        if mode != "off" and backend == "inductor" and not _effective(data, cls, "inductor_cpu", i)[0]:
            raise _fail(key, mode, inductor_cpu_refusal(key[: -len("compile")]))


def _check_mixing(data: dict) -> None:
    """Raise SpecError when an adaptive class (one with sub-networks in `spaces.classes`) would train with mixup or
    cutmix: its sub-networks distil networks trained on hard labels."""
    for i, cls in _class_scopes(data):
        if CLASSES[cls].subnet_kind is None:
            continue
        for name in ("mixup_alpha", "cutmix_alpha"):
            value, key = _effective(data, cls, name, i)
            if value > 0:
                raise _fail(key, value, f"{cls} trials train on hard labels (sub-networks distil a full network); "
                            f"set recipe.{cls}.{name} = 0")  # fmt: skip


# Classes that only some families support: (those families, what they are).
SUPPORTED_FAMILIES = {
    "mutual": (SLIMMABLE_FAMILIES, "slimmable"),
    "coop": (DEPTH_MASKABLE_FAMILIES, "depth-maskable"),
}


def _enumerate(data: dict) -> tuple[list[DesignPoint], list[str], list[int]]:
    """Return (design points, skipped-design reasons, the families.<i> index of each design)."""
    ds = data["dataset"]
    info = DATASETS[ds["name"]]
    shape = Shape(info.num_classes, info.in_chans, ds["image_size"])
    designs, skipped, origin = [], [], []
    label = fit_label(data["fit"])
    for i, fam in enumerate(data["families"]):
        first = len(designs)
        if fam["budgets"] is not None:
            singles = []
            for budget in fam["budgets"]:
                try:
                    rule = fit_rule(data["fit"], "single")
                    single = single_for_budget(fam["name"], fam["depths"][0], int(budget), shape, fam["options"], rule)
                    singles.append(replace(single, fit=label))
                except BudgetError as err:
                    raise _fail(f"families.{i}.budgets", fam["budgets"], f"single cannot fit: {err}") from None
        else:
            singles = [
                single_at(fam["name"], d, w, shape, fam["options"], label)
                for d in fam["depths"]
                for w in fam["widths"]
            ]
        for single in singles:
            for cls in data["classes"]:
                if cls == "single":  # the class that defines the budget
                    designs.append(single)
                    continue
                design_for = getattr(design_builders, CLASSES[cls].builder)
                if cls in SUPPORTED_FAMILIES:
                    families, kind = SUPPORTED_FAMILIES[cls]
                    if fam["name"] not in families:
                        raise _fail(
                            "classes",
                            data["classes"],
                            f"{cls!r} needs a {kind} family ({', '.join(families)}); families.{i} is {fam['name']!r}",
                        )
                if not CLASSES[cls].ensemble:
                    designs.append(design_for(single, cls))
                    continue
                for k in data["members"]:
                    divide = _resolve_recipe(data, cls, k, i)["divide_regularization"]
                    try:
                        rule = fit_rule(data["fit"], cls)
                        designs.append(design_for(single, cls, k, divide_regularization=divide, rule=rule,
                                                  width_granularity=data["width_granularity"],
                                                  depth_granularity=data["depth_granularity"]))  # fmt: skip
                    except BudgetError as err:
                        if not data["skip_unfit"]:
                            raise SpecError(
                                f"families.{i} ({fam['name']}): {err}; lower members, raise the "
                                "budget, or set skip_unfit = true"
                            ) from None
                        skipped.append(str(err))
        origin += [i] * (len(designs) - first)
    return designs, skipped, origin


# What a trial measures also depends on where it runs: the device kind and count (resources.gpus), GPU sharing,
# the CPUs it holds (Ray sets the worker's thread count from them) and torch's intra-op threads.
IDENTITY_MEASURE_KEYS = ("threads",)


def _without_defaults(values: dict, defaults: dict) -> dict:
    """Return `values` less the keys whose value equals their default (a key with no default always stays)."""
    return {k: v for k, v in values.items() if k not in defaults or defaults[k] != v}


def _default_recipe(config: dict) -> dict:
    """Return the recipe a trial of this design would get from a spec with no [recipe] keys (its class defaults and
    the values derived from epochs, members and image size), or {} for a config that names no known class."""
    design = config.get("design") or {}
    if design.get("design_class") not in CLASS_DEFAULTS or "epochs" not in config:
        return {}
    bare = {"_raw_recipe": {}, "epochs": config["epochs"], "dataset": config.get("dataset") or {}}
    return _resolve_recipe(bare, design["design_class"], int(design.get("members") or 1))


def trial_identity(config: dict, with_seed: bool = True) -> dict:
    """Return what identifies a trial: data set, design, epochs, seed, and the recipe, resources and thread setting
    that differ from their defaults.

    Keys at their default value are left out, so adding a spec key with a default keeps every existing id. The data
    set's location (root, download) is left out, so the id does not depend on where the data lives. The resources
    (device kind and count, sharing, CPUs) and `measure.threads` are in: they change what a trial measures.
    """
    dataset = config.get("dataset") or {}
    info = DATASETS.get(dataset.get("name"))
    dataset_defaults = {k: v.default for k, v in DATASET_KEYS.items() if k not in ("name", "root", "download")}
    if info is not None:
        dataset_defaults["image_size"] = info.image_size
    identity = {
        "dataset": _without_defaults({k: v for k, v in dataset.items() if k not in ("root", "download")},
                                     dataset_defaults),
        "design": config.get("design"),
        "recipe": _without_defaults(config.get("recipe") or {}, _default_recipe(config)),
        "epochs": config.get("epochs"),
        "resources": _without_defaults(config.get("resources") or {},
                                       {k: v.default for k, v in RESOURCE_KEYS.items()}),
        "measure": _without_defaults({k: v for k, v in (config.get("measure") or {}).items()
                                      if k in IDENTITY_MEASURE_KEYS}, {k: v.default for k, v in MEASURE_KEYS.items()}),
    }  # fmt: skip
    if with_seed:
        identity["seed"] = config.get("seed")
    return identity


def identity_hash(identity: dict) -> str:
    """Return 16 hex chars of sha1 over the identity's canonical JSON."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trial_id(config: dict) -> str:
    """Return the stable id (16 hex chars) of a trial: a hash of `trial_identity(config)`."""
    return identity_hash(trial_identity(config))


def _trial_resources(resources: dict, design_class: str) -> dict:
    """Return a trial's resources: the spec's, with `parallel` resolved to the class's mode and `workers` to the
    number of Ray Train workers (at their defaults, "none" and 1, they stay out of the trial's id)."""
    out = dict(resources)
    out["parallel"] = parallel_mode(resources, design_class)
    out["workers"] = train_workers(resources)
    return out


def trial_configs(spec: Spec) -> list[dict]:
    """Return one JSON-able trial config per (design point, seed), design-major, each with its `trial_id`."""
    data = spec.data
    info = DATASETS[data["dataset"]["name"]]
    dataset = {**data["dataset"], "num_classes": info.num_classes, "in_chans": info.in_chans}
    configs = []
    for design, family_index in zip(spec.designs, spec.design_families, strict=True):
        recipe = _resolve_recipe(data, design.design_class, design.members, family_index)
        for seed in data["seeds"]:
            config = {
                "sweep": spec.name,
                "seed": seed,
                "epochs": data["epochs"],
                "dataset": dict(dataset),
                "design": design.as_dict(),
                "recipe": recipe,
                "measure": dict(data["measure"]),
                "resources": _trial_resources(data["resources"], design.design_class),
            }
            configs.append({"trial_id": trial_id(config), **config})
    return configs
