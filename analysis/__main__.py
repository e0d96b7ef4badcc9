"""Command line: `python -m analysis report ...` writes a sweep report; `... advise ...` picks a design;
`... explore ...` writes the interactive explorer page.

python -m analysis report --store results --sweep digits --out reports/digits
python -m analysis explore --store results --sweep digits --out reports/digits/explorer
python -m analysis advise --store results --sweep digits --max-latency-ms 5 --max-memory-mb 500 --max-params 2e6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analysis.est import ALPHA, DEFAULT_RULE, EQUIVALENCE_PP, ERROR_CONTROLS, MAX_BUDGET_DEVIATION_PCT, TIE_RULES


def _rule_options(p: argparse.ArgumentParser) -> None:
    """Add the verdict options (analysis.est.Rule) to a subcommand."""
    p.add_argument("--tie-rule", choices=TIE_RULES, default=DEFAULT_RULE,
                   help="how a cell is decided: welch (a test per cell; default) or an overlap rule kept for "
                        "comparison with earlier reports (std, ci95)")  # fmt: skip
    p.add_argument("--alpha", type=float, default=ALPHA, help="error level of a verdict (default %(default)g)")
    p.add_argument("--equivalence-pp", type=float, default=EQUIVALENCE_PP,
                   help="equivalence margin, percentage points of accuracy (default %(default)g)")  # fmt: skip
    p.add_argument("--error-control", choices=ERROR_CONTROLS, default="bh",
                   help="multiplicity control over each epoch's cells (default %(default)s: Benjamini-Hochberg)")
    p.add_argument("--looks", default="",
                   help="seed counts at which an adaptive seed policy read verdicts, e.g. 2,4,6,8 (alpha is spent "
                        "over them); default: one look")  # fmt: skip


def _rule(args: argparse.Namespace):
    from analysis.est import Rule

    looks = tuple(int(n) for n in args.looks.split(",") if n.strip()) if args.looks else ()
    return Rule(args.tie_rule, args.alpha, args.equivalence_pp, args.error_control, looks)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="write figures, tables and a report page for one sweep")
    r.add_argument("--store", default="results", help="results store folder (default: results)")
    r.add_argument("--sweep", default=None, help="sweep name (default: the store's only sweep)")
    r.add_argument("--out", required=True, help="output folder")
    _rule_options(r)
    r.add_argument("--no-html", action="store_true", help="write only the Markdown page")
    r.add_argument("--max-budget-deviation-pct", type=float, default=MAX_BUDGET_DEVIATION_PCT,
                   help="mark designs further from their budget (%%, default %(default)g)")  # fmt: skip
    r.add_argument("--no-figures", action="store_true", help="text and tables only (faster)")
    r.add_argument("--formats", default="png",
                   help="figure file formats, comma-separated, of png, svg, pdf (default: %(default)s; png is always "
                        "written, the page shows it; add svg or pdf for vector figures, e.g. for a paper)")  # fmt: skip
    x = sub.add_parser("explore", help="write the interactive explorer: one offline HTML page (open DIR/index.html)")
    x.add_argument("--store", default="results", help="results store folder (default: results)")
    x.add_argument("--sweep", default=None, help="sweep name (default: every sweep of the store)")
    x.add_argument("--out", required=True, help="output folder (index.html and plotly.min.js)")
    _rule_options(x)
    x.add_argument("--max-budget-deviation-pct", type=float, default=MAX_BUDGET_DEVIATION_PCT,
                   help="mark designs further from their budget (%%, default %(default)g)")  # fmt: skip
    a = sub.add_parser("advise", help="best measured design within latency / memory / parameter limits")
    a.add_argument("--store", default="results", help="results store folder (default: results)")
    a.add_argument("--sweep", default=None, help="sweep name (default: all sweeps)")
    a.add_argument("--max-latency-ms", type=float, default=None, help="limit on latency p50 at batch 1 (ms)")
    a.add_argument("--max-memory-mb", type=float, default=None, help="limit on peak training memory (MB)")
    a.add_argument("--max-params", type=float, default=None, help="limit on total parameters (count, e.g. 2e6)")
    a.add_argument("--max-budget-deviation-pct", type=float, default=MAX_BUDGET_DEVIATION_PCT,
                   help="mark designs further from their budget (%%, default %(default)g)")  # fmt: skip
    a.add_argument("--json", action="store_true", help="print the chosen and runner-up designs as JSON too")
    return p


def _store_problem(store: str) -> str | None:
    """Return why `store` is not a results store (one line, with the stores beside it), or None when it is one."""
    if "://" in str(store):
        return None  # an object store has no folders to look at cheaply; the readers report what they find
    path = Path(store).expanduser()
    if (path / "trials").is_dir():
        return None
    parent = path.parent if str(path.parent) else Path(".")
    near = sorted(p.name for p in parent.iterdir() if (p / "trials").is_dir()) if parent.is_dir() else []
    what = "no results store" if not path.exists() else "no trials folder, so no results store,"
    return f"{what} at {store}; stores in {parent}: {', '.join(near) or 'none'}"


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the process exit code (0 ok, 1 nothing fits / no data, 2 usage error)."""
    args = _parser().parse_args(argv)
    from analysis import report

    problem = _store_problem(args.store)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.cmd == "explore":
        from analysis.explore import ExploreError, write_explorer

        try:
            page = write_explorer(args.store, args.sweep, args.out, rule=_rule(args),
                                  max_budget_deviation_pct=args.max_budget_deviation_pct)  # fmt: skip
        except (ExploreError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"explorer written: {page} (open it in a browser; plotly.min.js beside it)")
        return 0
    if args.cmd == "report":
        sweep = args.sweep
        if sweep is not None and sweep not in report.sweeps_in(args.store):
            names = ", ".join(report.sweeps_in(args.store)) or "none"
            print(f"error: the store {args.store} holds no sweep {sweep!r}; it holds: {names}", file=sys.stderr)
            return 2
        if sweep is None:
            names = report.sweeps_in(args.store)
            if len(names) != 1:
                print(
                    f"error: pass --sweep; the store {args.store} holds sweeps: {', '.join(names) or 'none'}",
                    file=sys.stderr,
                )
                return 2
            sweep = names[0]
        try:
            rule = _rule(args)
            from analysis.figures import check_formats

            formats = check_formats([f.strip() for f in args.formats.split(",") if f.strip()])
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        path = report.write_report(
            args.store,
            sweep,
            args.out,
            rule=rule,
            write_html=not args.no_html,
            make_figures=not args.no_figures,
            max_budget_deviation_pct=args.max_budget_deviation_pct,
            formats=formats,
        )
        print(f"report written: {path}")
        return 0
    from analysis.advise import advise

    trials, _, load_warnings = report.read_store(args.store, args.sweep, epoch_columns=["trial_id"])
    for w in load_warnings:
        print(f"warning: {w}", file=sys.stderr)
    from analysis.store import load_subnets

    subnets = load_subnets(args.store, sweep=args.sweep)
    res = advise(trials, args.max_latency_ms, args.max_memory_mb, args.max_params, subnets=subnets,
                 max_budget_deviation_pct=args.max_budget_deviation_pct)  # fmt: skip
    print(res.text)
    if args.json:
        pick = {
            "best": None if res.best is None else res.best.to_dict(),
            "runner_up": None if res.runner_up is None else res.runner_up.to_dict(),
            "excluded_by": res.excluded_by,
        }
        print(json.dumps(pick, indent=2, default=str))
    return 0 if res.best is not None else 1


if __name__ == "__main__":
    sys.exit(main())
