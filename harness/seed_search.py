"""Adaptive seeds as a Ray Tune searcher: seeds are spent where the EST's answer is still open (DESIGN section 6).

A spec's `seeds = { min = 2, max = 8 }` runs every design point with seeds 0..min-1 first. When that round is done,
the searcher asks `next_look()` (the CLI passes one that reads the store and calls `analysis.est.seeds_wanted`: the
design points whose cells on the EST's path are unresolved, each with the seed count of its next look) and suggests
the trials that bring those points there, in the same Tune run and store; then it looks again, until nothing is open
or every open point is at max. A rerun of the command continues where it stopped: the looks are read from the store,
and trials already in it are never suggested again.

This module does not import `analysis` (harness does not depend on it); the CLI wires the two together.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

from ray.tune.search import Searcher

from spaces.spec import trial_id

POINT_KEYS = ("dataset", "family", "design_class", "members", "budget", "fit")


def point_key(config: dict) -> tuple:
    """Return the design point of a trial config as the store names it: (dataset, family, design_class, members,
    budget, fit)."""
    d = config["design"]
    return (config["dataset"]["name"], d["family"], d["design_class"], int(d["members"]), int(d["budget"]), d["fit"])


def configs_for_look(wanted: list[dict], configs: list[dict], have: set[str]) -> list[dict]:
    """Return the trial configs that bring each wanted design point to its target seed count.

    `wanted`: rows with POINT_KEYS, n_seeds and target_seeds (`analysis.est.seeds_wanted`). `configs`: the sweep's
    first-round configs (every point's design and recipe; several configurations of one point are all extended).
    `have`: trial ids already in the store, never suggested again (so an error row is not retried by a look).
    Seeds are the integers after the first round's, in order: a point at n seeds gets seeds n..target-1.
    """
    by_point: dict[tuple, list[dict]] = {}
    for c in configs:
        by_point.setdefault(point_key(c), []).append(c)
    out, seen = [], set(have)
    for w in wanted:
        key = tuple(w[k] for k in POINT_KEYS)
        key = (key[0], key[1], key[2], int(key[3]), int(key[4]), key[5])
        bases = {json.dumps({k: v for k, v in c.items() if k not in ("seed", "trial_id")}, sort_keys=True): c
                 for c in by_point.get(key, [])}  # one base per configuration of the point  # fmt: skip
        for base in bases.values():
            for seed in range(int(w["n_seeds"]), int(w["target_seeds"])):
                new = {k: copy.deepcopy(v) for k, v in base.items() if k != "trial_id"}
                new["seed"] = seed
                tid = trial_id(new)
                if tid not in seen:
                    seen.add(tid)
                    out.append({"trial_id": tid, **new})
    return out


class AdaptiveSeeds(Searcher):
    """Suggest the sweep's trials round by round: the first round's configs, then, each time every suggested trial
    has finished, the configs of the next look (`next_look()`, [] when nothing is open), until a look is empty.

    `spent()` / `cap` count trials (design point x seed) for the progress line: the sweep's trials so far against
    every point run with max seeds.
    """

    def __init__(self, first: list[dict], next_look: Callable[[], list[dict]], cap: int, done_before: int = 0,
                 on_look: Callable[[int, list[dict]], None] | None = None):  # fmt: skip
        super().__init__()
        self.queue = list(first)
        self.next_look = next_look
        self.cap, self.done_before = cap, done_before
        self.on_look = on_look
        self.running = 0
        self.completed: set[str] = set()  # Tune's ids of the trials finished in this run (it may report one twice)
        self.suggested = 0
        self.looks = 0
        self.finished = False
        self.added: list[dict] = []  # the configs the looks added (the first round's are the caller's)

    def spent(self) -> int:
        """Return the trials spent so far: those in the store before this run plus those finished in it."""
        return self.done_before + len(self.completed)

    def progress(self) -> str:
        """Return the progress line's part on seeds, e.g. "seeds 20/64 of max everywhere (+2 in flight), look 1"."""
        return f"seeds {self.spent()}/{self.cap} of max everywhere (+{self.running} in flight), look {self.looks}"

    def suggest(self, trial_id: str) -> dict | str | None:
        """Return the next trial's config ({"trial": config}), None while a round is still running, or FINISHED."""
        if self.finished:
            return Searcher.FINISHED
        if not self.queue:
            if self.running:
                return None  # the look waits for every trial of the round
            self.queue = list(self.next_look())
            self.added += self.queue
            self.looks += 1
            if self.on_look is not None:
                self.on_look(self.looks, self.queue)
            if not self.queue:
                self.finished = True
                return Searcher.FINISHED
        self.running += 1
        self.suggested += 1
        return {"trial": self.queue.pop(0)}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Count a finished (or failed) trial out of the running round."""
        if trial_id not in self.completed:
            self.completed.add(trial_id)
            self.running = max(0, self.running - 1)

    def __getstate__(self) -> dict:
        # Should Tune pickle its searcher, the callables and the terminal stream stay behind (the store holds the
        # looks, so a rerun rebuilds them).
        return {k: v for k, v in self.__dict__.items() if k not in ("next_look", "on_look", "stream", "tracker")}

    def save(self, checkpoint_path: str) -> None:
        """Write the round's state (JSON); the looks themselves are re-read from the store on a rerun."""
        with open(checkpoint_path, "w") as f:
            json.dump({"queue": self.queue, "suggested": self.suggested, "looks": self.looks}, f)

    def restore(self, checkpoint_path: str) -> None:
        """Read what `save` wrote."""
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.queue, self.suggested, self.looks = state["queue"], state["suggested"], state["looks"]
