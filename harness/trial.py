"""Run one trial of a spec without Ray: `python -m harness.trial --spec digits --index 3`.

`run_trial(config, report, checkpoint_dir)` is the trial function of every design class (`harness.loop`); this module
keeps its import path for the sweep and the tests and adds the command line, which prints each EPOCH and FINAL record
as one JSON line.
"""

from __future__ import annotations

import argparse
import sys

from harness.loop import print_record, run_trial

__all__ = ["main", "print_record", "run_trial"]


def main(argv: list[str] | None = None) -> int:
    """CLI: run trial N of a spec and print one JSON object per report on stdout; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="spec file or preset name (e.g. digits)")
    parser.add_argument("--index", type=int, default=0,
                        help="which trial of the spec (0-based; trials = design points x seeds, as the dry run numbers "
                        "them)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec key")
    parser.add_argument("--checkpoint-dir", default=None, help="resume from / save to this folder")
    args = parser.parse_args(argv)
    from spaces.spec import SpecError, load_spec, trial_configs

    try:
        configs = trial_configs(load_spec(args.spec, args.set))
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not 0 <= args.index < len(configs):
        print(f"error: --index {args.index} out of range; the spec has {len(configs)} trials", file=sys.stderr)
        return 2
    config = configs[args.index]
    d = config["design"]
    # Each JSON line says which trial it is: index N counts trials (design points x seeds, design-major).
    design = f"{d['design_class']} k={d['members']} {d['family']}-{d['depth']} w={d['width']} seed={config['seed']}"
    result = run_trial(config, lambda rec: print_record({**rec, "index": args.index, "design": design}),
                       args.checkpoint_dir)  # fmt: skip
    return 0 if result["final"]["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
