"""Run a sweep: spec file -> design points -> Ray Tune trials -> Parquet results store -> report.

    python run_sweep.py                          # the default `digits` preset on an embedded local Ray
    python run_sweep.py --spec FILE --dry-run    # print the design table; nothing trains, no Ray starts
    python run_sweep.py --spec FILE --address ray://host:10001   # or RAY_ADDRESS; `ray job submit -- ...` works too

Exit code 2 means the spec is invalid; the one-line message names the key, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import json
import sys

from spaces.designs import DesignPoint
from spaces.spec import DEFAULT_PRESET, SpecError, list_presets, load_spec

DRY_RUN_COLUMNS = (
    ("class", "design_class", "{}"),
    ("family", "family", "{}"),
    ("depth", "depth", "{}"),
    ("width", "width", "{}"),
    ("members", "members", "{}"),
    ("params/member", "params_member", "{:,}"),
    ("params total", "params_total", "{:,}"),
    ("budget", "budget", "{:,}"),
    ("dev %", "budget_deviation", "{:+.2f}"),
    ("MACs/sample", "macs", "{:,}"),
)


def design_table(designs: list[DesignPoint]) -> str:
    """Return the dry-run design table as aligned text, one row per design point."""
    rows = [[title for title, _, _ in DRY_RUN_COLUMNS]]
    for d in designs:
        values = d.as_dict()
        rows.append([fmt.format(values[key]) for _, key, fmt in DRY_RUN_COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


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
        "--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code (2 for an invalid spec)."""
    args = parse_args(argv)
    try:
        spec = load_spec(args.spec, args.overrides)
    except SpecError as err:
        print(f"spec error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        if args.json:
            print(json.dumps([d.as_dict() for d in spec.designs], indent=2))
        else:
            n_seeds = len(spec.data["seeds"])
            print(
                f"sweep {spec.name!r} from {spec.source}: {len(spec.designs)} design points x {n_seeds} seeds "
                f"= {len(spec.designs) * n_seeds} trials of {spec.data['epochs']} epochs on "
                f"{spec.data['dataset']['name']}"
            )
            print(design_table(spec.designs))
        for reason in spec.skipped:
            print(f"skipped (skip_unfit): {reason}", file=sys.stderr)
        return 0
    from harness.sweep import run_sweep  # imported late: a dry run needs neither Ray nor the trainer

    summary = run_sweep(spec, store=args.store, address=args.address)
    if not args.no_report:
        from analysis.report import write_report

        page = write_report(args.store, spec.name, args.report or f"reports/{spec.name}")
        print(f"report: {page} (figures and tables beside it)")
        from analysis.explore import write_explorer

        print(f"explorer: {write_explorer(args.store, spec.name, page.parent / 'explorer')} (opens offline)")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
