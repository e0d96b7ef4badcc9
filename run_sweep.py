"""Run a sweep: spec file -> design points -> Ray Tune trials -> Parquet results store -> report.

    python run_sweep.py                          # the default `digits` preset on an embedded local Ray
    python run_sweep.py --spec FILE --dry-run    # print the design table; nothing trains, no Ray starts
    python run_sweep.py --spec FILE --address host:6379   # or RAY_ADDRESS
    ray job submit --working-dir . -- python run_sweep.py --spec FILE --store s3://bucket/store
    python run_sweep.py --rerun-errors           # train the trials recorded as errors again

Exit code 2 means nothing ran: the spec is invalid, or a pre-flight check failed (a data set that cannot be read, a
store that cannot be written, a Ray address where nothing answers); the one-line message names the thing, the value
and the fix.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.claims import CLAIM_STALE_S  # pyarrow only: no Ray, no torch
from spaces.classes import RULE_SIZED_CLASSES
from spaces.designs import DesignPoint
from spaces.spec import DEFAULT_PRESET, SpecError, list_presets, load_spec

DRY_RUN_COLUMNS = (
    ("trials", "trials", "{}"),
    ("class", "design_class", "{}"),
    ("family", "family", "{}"),
    ("depth", "depth", "{}"),
    ("width", "width", "{}"),
    ("members", "members", "{}"),
    ("params/member", "params_member", "{:,}"),
    ("params total", "params_total", "{:,}"),
    ("budget", "budget", "{:,}"),
    ("dev %", "budget_deviation_pct", "{:+.2f}"),
    ("mark", "beyond_max_deviation", "{}"),
    ("MACs/sample", "macs", "{:,}"),
)


def dry_run_rows(designs: list[DesignPoint], n_seeds: int, max_deviation_pct: float = 10.0) -> list[dict]:
    """Return one dict per design point for the dry run: the design, `budget_deviation_pct` (% of the budget, the
    store's name for it), `beyond_max_deviation` ("*" when it is further than `max_deviation_pct` % from the budget;
    "rule" for a class whose division rule sets its size, such as dct, which the analysis compares at its real
    parameter count and never marks; else "") and `trials`, the trial indices of its seeds (what
    `python -m harness.trial --index N` takes; trials are numbered design-major, seeds inner)."""
    rows = []
    for i, d in enumerate(designs):
        values = d.as_dict()
        values["budget_deviation_pct"] = values.pop("budget_deviation")
        if d.design_class in RULE_SIZED_CLASSES:
            values["beyond_max_deviation"] = "rule"
        else:
            values["beyond_max_deviation"] = "*" if abs(values["budget_deviation_pct"]) > max_deviation_pct else ""
        rows.append({"trials": list(range(i * n_seeds, (i + 1) * n_seeds)), **values})
    return rows


def worst_deviation_lines(designs: list[DesignPoint], max_deviation_pct: float) -> list[str]:
    """Return one line per design class: its worst budget deviation (%, furthest from 0), how many of its designs
    lie beyond `max_deviation_pct` % and how many within 5%."""
    lines = []
    for cls in dict.fromkeys(d.design_class for d in designs):
        devs = [d.budget_deviation for d in designs if d.design_class == cls]
        worst = max(devs, key=abs)
        beyond = sum(abs(v) > max_deviation_pct for v in devs)
        close = sum(abs(v) <= 5.0 for v in devs)
        line = (f"  {cls}: worst {worst:+.2f}%, {beyond}/{len(devs)} beyond {max_deviation_pct:g}%, "
                f"{close}/{len(devs)} within 5%")
        if cls in RULE_SIZED_CLASSES:
            line += " (sized by its division rule: compared at its real parameter count, never marked)"
        lines.append(line)
    return lines


def _index_range(indices: list[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"


def design_table(designs: list[DesignPoint], n_seeds: int = 1, max_deviation_pct: float = 10.0) -> str:
    """Return the dry-run design table as aligned text, one row per design point; its first column holds the trial
    indices of the point's seeds, its mark a "*" on designs further than `max_deviation_pct` % from their budget
    ("rule" on dct, whose division rule sets its size)."""
    columns = list(DRY_RUN_COLUMNS)
    if any("stage_blocks" in d.family_args for d in designs):  # depth_granularity = "block": show each stage's blocks
        columns.insert(4, ("blocks", "stage_blocks", "{}"))
    rows = [[title for title, _, _ in columns]]
    for values in dry_run_rows(designs, n_seeds, max_deviation_pct):
        values["trials"] = _index_range(values["trials"])
        blocks = values["family_args"].get("stage_blocks")
        values["stage_blocks"] = "+".join(map(str, blocks)) if blocks else ""
        rows.append([fmt.format(values[key]) for _, key, fmt in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text_columns = (1, 2)  # class and family read left-aligned; numbers right-aligned
    lines = [
        "  ".join(
            c.ljust(w) if i in text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def _parallel_text(resources: dict) -> str:
    mode = resources["parallel"]
    return f"{mode}-parallel" if isinstance(mode, str) else ", ".join(f"{c}: {m}" for c, m in mode.items())


def packing_line(resources: dict, measure: dict) -> str:
    """Return the dry run's line saying how many trials run at once per device (a GPU, or a group of `cpus` cores) and
    what each asks Ray for; the costs the study compares are measured alone by the sweep's cost pass either way."""
    cpus, gpus = float(resources["cpus"]), float(resources["gpus"])
    from spaces.spec import train_workers

    n = train_workers(resources)
    if n > 1:
        device = "1 GPU and " if gpus else ""
        return (f"devices per trial: {n} Ray Train workers, each {device}{cpus:g} CPUs ({_parallel_text(resources)});"
                " their rows keep their in-run costs (the cost pass measures one-device points)")  # fmt: skip
    if gpus:
        per = int(resources["trials_per_gpu"])
        share = gpus / per
        if per == 1 and gpus < 1:  # the older way to share: a fractional GPU per trial
            per = int(1 // gpus)
        return (f"trials at once per device: {per} per GPU (each asks for {share:g} GPU and {cpus:g} CPUs); costs "
                "measured alone by the cost pass")  # fmt: skip
    per = int(resources["trials_per_cpu_group"])
    threads = int(measure["threads"]) or "Ray's"
    return (f"trials at once per device: {per} per group of {cpus:g} CPU cores (each asks for {cpus / per:g} CPUs, "
            f"runs {threads} threads; a node of N cores runs N / {cpus / per:g} at once); costs measured alone by the "
            "cost pass")  # fmt: skip


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# Kept here (and checked equal to harness.sweep's in a test) so that --help needs neither Ray nor torch.
DEFAULT_MAX_FAILURES = 2


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec",
        default=DEFAULT_PRESET,
        help=f"TOML spec file or preset name ({', '.join(list_presets())}); default: %(default)s",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key, e.g. --set epochs=3 --set recipe.lr=0.05 (repeatable)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the design table and exit")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the designs as a JSON list")
    parser.add_argument("--store", default="results", help="results store (local path or URI); default: %(default)s")
    parser.add_argument(
        "--report", default=None, metavar="DIR", help="where the analysis report goes (default: reports/<sweep name>)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the analysis report at the end")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address host:port (default: RAY_ADDRESS, else an embedded local Ray); ray://host:port "
        "needs pip install 'ray[client]'",
    )
    parser.add_argument(
        "--rerun-errors",
        action="store_true",
        help="train trials recorded with status error again (e.g. after a transient out-of-memory); they resume from "
        "their last checkpoint when one is left",
    )
    parser.add_argument(
        "--max-failures",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="retries of a trial that failed with a transient error (lost node, killed worker) before it is recorded "
        f"as an error; default: {DEFAULT_MAX_FAILURES}",
    )
    parser.add_argument(
        "--claim-stale-after",
        type=_positive_seconds,
        default=CLAIM_STALE_S,
        metavar="SECONDS",
        help="another run's claim on a trial with no heartbeat for this long is stale and taken over (its run died); "
        "default: %(default)g",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="let Ray print to the terminal (default: to a log file in <store>/_tune)"
    )
    return parser.parse_args(argv)


def verdict_rule(spec):
    """Return the `analysis.est.Rule` of a spec's [verdicts] table (its looks: the adaptive policy's seed counts)."""
    from analysis.est import Rule

    v = spec.data["verdicts"]
    return Rule(v["rule"], v["alpha"], v["equivalence_pp"], v["error_control"], tuple(v["looks"]))


def seeds_wanted_for(spec):
    """Return the callable an adaptive sweep asks at each look: (store, sweep) -> the design points to extend, as
    `analysis.est.seeds_wanted` rows (dicts), decided by the spec's verdict rule."""
    from analysis.est import seeds_wanted
    from analysis.report import read_store

    policy, rule = spec.data["seed_policy"], verdict_rule(spec)

    def wanted(store: str, sweep: str) -> list[dict]:
        trials, epochs, _ = read_store(store, sweep)
        rows = seeds_wanted(epochs, policy["looks"], policy["max"], trials if not trials.empty else None, rule)
        return rows.to_dict("records")

    return wanted


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code (2: invalid spec or failed pre-flight check; 1: some trial
    failed)."""
    args = parse_args(argv)
    try:
        spec = load_spec(args.spec, args.overrides)
    except SpecError as err:
        print(f"spec error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        n_seeds = len(spec.data["seeds"])
        max_dev = spec.data["max_budget_deviation_pct"]
        if args.json:
            print(json.dumps(dry_run_rows(spec.designs, n_seeds, max_dev), indent=2))
        else:
            n_trials = len(spec.designs) * n_seeds
            print(
                f"sweep {spec.name!r} from {spec.source}: {_plural(len(spec.designs), 'design point')} x "
                f"{_plural(n_seeds, 'seed')} = {_plural(n_trials, 'trial')} of {_plural(spec.data['epochs'], 'epoch')} "
                f"on {spec.data['dataset']['name']} (the trials column is `python -m harness.trial --index N`)"
            )
            print(design_table(spec.designs, n_seeds, max_dev))
            policy = spec.data["seed_policy"]
            if policy:
                print(f"adaptive seeds: {policy['min']} per point first, then up to {policy['max']} at looks "
                      f"{policy['looks']} where a cell on the EST's path is unresolved (at most "
                      f"{_plural(len(spec.designs) * policy['max'], 'trial')})")  # fmt: skip
            print(f"\nbudget deviation per class (marked * beyond max_budget_deviation_pct = "
                  f"{max_dev:g}%; 'rule': sized by its division rule, never marked):")
            print("\n".join(worst_deviation_lines(spec.designs, max_dev)))
            print("\n" + packing_line(spec.data["resources"], spec.data["measure"]))
        for reason in spec.skipped:
            print(f"skipped (skip_unfit): {reason}", file=sys.stderr)
        return 0
    from harness.preflight import PreflightError, plan_sweep
    from harness.store import display_name
    from spaces.spec import trial_configs

    try:
        # Planned and checked before Ray is imported, so that a missing data set or an unreachable or read-only store
        # fails in seconds; run_sweep runs this plan rather than scanning and checking again.
        store = display_name(args.store)
        plan = plan_sweep(trial_configs(spec), store, spec.name, args.address, args.rerun_errors,
                          args.claim_stale_after)  # fmt: skip
        from harness.sweep import run_sweep  # imported late: a dry run needs neither Ray nor the trainer

        failures = DEFAULT_MAX_FAILURES if args.max_failures is None else args.max_failures
        wanted = seeds_wanted_for(spec) if spec.data["seed_policy"] else None
        summary = run_sweep(spec, store=store, address=args.address, verbose=args.verbose,
                            rerun_errors=args.rerun_errors, max_failures=failures, plan=plan,
                            seeds_wanted=wanted)  # fmt: skip
    except PreflightError as err:
        print(err, file=sys.stderr)
        return 2
    if not args.no_report:
        from analysis.report import write_report

        max_dev = spec.data["max_budget_deviation_pct"]
        rule = verdict_rule(spec)
        page = write_report(args.store, spec.name, args.report or f"reports/{spec.name}",
                            max_budget_deviation_pct=max_dev, rule=rule)  # fmt: skip
        print(f"report: {page} (figures and tables beside it)")
        from analysis.explore import write_explorer

        explorer = write_explorer(args.store, spec.name, page.parent / "explorer", max_budget_deviation_pct=max_dev,
                                  rule=rule)  # fmt: skip
        print(f"explorer: {explorer} (opens offline)")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
