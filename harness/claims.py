"""Claims: which run is training which trial, kept in the store itself, so that drivers sharing a store (a second
submission of the same job, two colleagues, two clusters on one bucket) never train a trial twice.

Before a worker trains a trial it claims it: it creates the claim file

    <store>/_claims/sweep=<sweep>/<trial_id>.<generation>.json

only if no file of that name exists (an exclusive create, `O_CREAT | O_EXCL`, on a local or NFS folder; a conditional
put, `If-None-Match: *`, on S3). Exactly one of two drivers racing for a trial wins. The file holds the run id, the
worker's host and process, the driver's host and process, when it was claimed and a heartbeat time, which the worker
rewrites every `heartbeat_every(stale_s)` seconds while the trial trains; the claim is deleted once the trial's rows are
in the store (and the driver deletes whatever claims of its run are left when it exits).

A claim of another run whose heartbeat is younger than the staleness limit is live: the trial is skipped. An older one
is stale (its run died: SIGKILL, a lost node, a power cut) and is taken over by creating the next generation's file,
again exclusively, so two drivers taking over the same stale claim still train the trial once. A claim of the same run
is its own (Ray retrying the trial after a failed attempt).

Nothing here imports torch or Ray. pyarrow cannot make a conditional put, so an S3 store's claims are created with
boto3 (`pip install boto3`); on any other URI scheme there are no claims (`supported` is False) and the driver warns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from harness.store import filesystem, is_uri

# Our choice: a claim with no heartbeat for 10 minutes is stale. Heartbeats come every 30 s (`heartbeat_every`), so
# that is 20 missed in a row, which neither a slow store nor a busy node explains, while a run that died leaves its
# trials waiting at most 10 minutes (a taken-over trial resumes from its last checkpoint). Too short a limit would let
# a second run train a live trial again, the very thing claims prevent. Hosts' clocks must agree to well within it.
CLAIM_STALE_S = 600.0
HEARTBEAT_S = 30.0
_TAKEOVER_TRIES = 5  # exclusive creates lost in a row to other drivers before giving the trial up to them


def heartbeat_every(stale_s: float) -> float:
    """Return the seconds between heartbeats for a staleness limit of `stale_s` seconds: 30 s, or a tenth of the limit
    when that is shorter."""
    return min(HEARTBEAT_S, stale_s / 10)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(sweep: str) -> str:
    """Return a run id no other driver can have: `<sweep>-<YYYYmmdd-HHMMSS>-<6 hex>` (local time; the random part
    keeps two drivers started in the same second apart)."""
    return f"{sweep}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass
class Claim:
    """One claim file as read: whose it is and how fresh. Times are UTC."""

    trial_id: str
    generation: int
    path: str
    run_id: str | None
    host: str | None  # where the trial trains (the worker)
    pid: int | None
    claimed_at: dt.datetime
    heartbeat_at: dt.datetime
    driver_host: str | None = None
    driver_pid: int | None = None

    def age_s(self, now: dt.datetime | None = None) -> float:
        """Return the seconds since the claim's last heartbeat."""
        return ((now or _now()) - self.heartbeat_at).total_seconds()

    def is_stale(self, stale_s: float, now: dt.datetime | None = None) -> bool:
        """Return True when the last heartbeat is older than `stale_s` seconds."""
        return self.age_s(now) > stale_s

    def describe(self) -> str:
        """Return who holds the claim, e.g. `run digits-20261205-120102-ab12cd (pid 4242) on host node-3`."""
        return f"run {self.run_id or '?'} (pid {self.pid if self.pid is not None else '?'}) on host {self.host or '?'}"


@dataclass
class Outcome:
    """What `Claims.acquire` got: `mine` (the claim now held, None when another run holds the trial), `holder` (that
    other run's live claim) and `taken_over` (the stale claim replaced, if any)."""

    mine: Claim | None
    holder: Claim | None = None
    taken_over: Claim | None = None


def _stamp(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


class Claims:
    """The claims of one sweep in one store (see the module docstring). `stale_s`: the staleness limit in seconds."""

    def __init__(self, store: str, sweep: str, stale_s: float = CLAIM_STALE_S):
        self.store, self.sweep, self.stale_s = store, sweep, float(stale_s)
        self.fs, root = filesystem(store)
        self.folder = f"{root}/_claims/sweep={sweep}"
        self.kind = "local" if isinstance(self.fs, pafs.LocalFileSystem) else self.fs.type_name
        self._s3 = None

    @property
    def supported(self) -> bool:
        """True when this store can create a file exclusively: a local (or NFS) folder, or S3."""
        return self.kind in ("local", "s3")

    # --- storage primitives ------------------------------------------------------------------------------------
    def s3_client(self):
        """Return a boto3 S3 client configured from the store URI's query (endpoint, scheme, region, keys)."""
        if self._s3 is None:
            try:
                import boto3
            except ImportError:
                raise RuntimeError("claims on an S3 store need boto3 (pip install boto3): pyarrow cannot make the "
                                   "conditional put that claims a trial") from None  # fmt: skip
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.store).query).items()}
            endpoint = query.get("endpoint_override")
            if endpoint and "://" not in endpoint:
                endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
            self._s3 = boto3.client("s3", endpoint_url=endpoint, region_name=query.get("region"),
                                    aws_access_key_id=query.get("access_key"),
                                    aws_secret_access_key=query.get("secret_key"),
                                    aws_session_token=query.get("session_token"))  # fmt: skip
        return self._s3

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Write `data` to `path` only if no file of that name exists; return False when one did."""
        if self.kind == "local":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            return True
        bucket, key = path.split("/", 1)
        try:
            self.s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as err:
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):  # 412; 409: a concurrent put won
                return False
            raise
        return True

    def _overwrite(self, path: str, data: bytes) -> None:
        """Replace the file at `path` whole (a reader sees the old or the new content, never half)."""
        if self.kind == "local":
            tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        else:  # an object store's put replaces the object whole
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def _read(self, path: str, trial_id: str, generation: int, mtime: dt.datetime | None) -> Claim:
        try:
            with self.fs.open_input_stream(path) as f:
                doc = json.loads(f.read())
        except (OSError, pa.ArrowException, ValueError):
            # Gone, or being written (a local exclusive create fills the file after making it): judged by its time.
            doc = {}
        when = mtime or _now()

        def time_of(key: str) -> dt.datetime:
            return dt.datetime.fromisoformat(doc[key]) if doc.get(key) else when

        return Claim(trial_id=trial_id, generation=generation, path=path, run_id=doc.get("run_id"),
                     host=doc.get("host"), pid=doc.get("pid"), claimed_at=time_of("claimed_at"),
                     heartbeat_at=time_of("heartbeat_at"), driver_host=doc.get("driver_host"),
                     driver_pid=doc.get("driver_pid"))  # fmt: skip

    def _files(self) -> dict[str, list[tuple[int, str, dt.datetime | None]]]:
        """Return {trial id: [(generation, path, mtime), ...] newest generation first} of the visible claim files."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.folder, allow_not_found=True))
        found: dict[str, list] = {}
        for info in infos:
            name = info.base_name
            if info.type != pafs.FileType.File or name.startswith(".") or not name.endswith(".json"):
                continue
            trial_id, _, gen = name[: -len(".json")].rpartition(".")
            if trial_id and gen.isdigit():
                mtime = info.mtime.astimezone(dt.UTC) if info.mtime is not None else None
                found.setdefault(trial_id, []).append((int(gen), info.path, mtime))
        return {tid: sorted(files, reverse=True) for tid, files in found.items()}

    def current(self) -> dict[str, Claim]:
        """Return {trial id: its newest claim} of every trial claimed in the sweep (one listing, one read each)."""
        return {tid: self._read(path, tid, gen, mtime) for tid, ((gen, path, mtime), *_) in self._files().items()}

    # --- what drivers and workers do -------------------------------------------------------------------------------
    def others(self, trial_ids, run_id: str | None = None) -> tuple[dict[str, Claim], dict[str, Claim]]:
        """Return ({trial id: live claim}, {trial id: stale claim}) of the trials in `trial_ids` claimed by runs other
        than `run_id`."""
        now, live, stale = _now(), {}, {}
        wanted = set(trial_ids)
        for tid, claim in self.current().items():
            if tid in wanted and claim.run_id != run_id:
                (stale if claim.is_stale(self.stale_s, now) else live)[tid] = claim
        return live, stale

    def _document(self, trial_id: str, run_id: str, driver: dict, claimed_at: dt.datetime) -> bytes:
        return json.dumps({"trial_id": trial_id, "run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "driver_host": driver.get("host"), "driver_pid": driver.get("pid"),
                           "claimed_at": _stamp(claimed_at), "heartbeat_at": _stamp(_now())}).encode()  # fmt: skip

    def acquire(self, trial_id: str, run_id: str, driver: dict | None = None) -> Outcome:
        """Claim `trial_id` for run `run_id`; return the Outcome. `driver`: {"host", "pid"} of the run's driver."""
        driver = driver or {}
        taken_over = None
        for _ in range(_TAKEOVER_TRIES):
            files = self._files().get(trial_id, [])
            if files:
                gen, path, mtime = files[0]
                claim = self._read(path, trial_id, gen, mtime)
                if claim.run_id == run_id:  # this run's own (an earlier attempt of the trial): keep it, refreshed
                    self._overwrite(path, self._document(trial_id, run_id, driver, claim.claimed_at))
                    return Outcome(mine=self._read(path, trial_id, gen, None), taken_over=taken_over)
                if not claim.is_stale(self.stale_s):
                    return Outcome(mine=None, holder=claim)
                taken_over, gen = claim, gen + 1
            else:
                gen = 1
            path = f"{self.folder}/{trial_id}.{gen}.json"
            if self._create_exclusive(path, self._document(trial_id, run_id, driver, _now())):
                for _, older, _ in files:  # the stale generations: nobody's now
                    with contextlib.suppress(OSError, pa.ArrowException):
                        self.fs.delete_file(older)
                return Outcome(mine=self._read(path, trial_id, gen, None), taken_over=taken_over)
            # another driver created that generation first: look again at what it wrote
        newest = self.current().get(trial_id)
        return Outcome(mine=None, holder=newest)

    def heartbeat(self, claim: Claim) -> None:
        """Rewrite the claim with the heartbeat time now (the run, host and claim time stay)."""
        driver = {"host": claim.driver_host, "pid": claim.driver_pid}
        self._overwrite(claim.path, self._document(claim.trial_id, claim.run_id, driver, claim.claimed_at))

    def release(self, claim: Claim) -> None:
        """Delete the claim file (a file already gone is fine)."""
        with contextlib.suppress(FileNotFoundError, OSError, pa.ArrowException):
            self.fs.delete_file(claim.path)

    def release_run(self, run_id: str) -> int:
        """Delete every claim of run `run_id` still in the sweep (what a driver does as it exits, so that claims of
        trials its workers could not release, e.g. on Ctrl-C, are not left to go stale); return how many."""
        gone = 0
        for claim in self.current().values():
            if claim.run_id == run_id:
                self.release(claim)
                gone += 1
        return gone

    @contextlib.contextmanager
    def held(self, trial_id: str, run_id: str, driver: dict | None = None):
        """Acquire the claim and yield the Outcome; while the body runs with the claim held a thread heartbeats it;
        on leaving, the claim is released."""
        outcome = self.acquire(trial_id, run_id, driver)
        if outcome.mine is None:
            yield outcome
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat_every(self.stale_s)):
                with contextlib.suppress(OSError, pa.ArrowException):  # a missed beat is retried at the next
                    self.heartbeat(outcome.mine)

        thread = threading.Thread(target=beat, name=f"claim-heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield outcome
        finally:
            stop.set()
            thread.join()
            self.release(outcome.mine)


def since(claims: list[Claim]) -> str:
    """Return the earliest claim time of `claims` as `HH:MM UTC` (with the date when it is not today)."""
    first = min(c.claimed_at for c in claims)
    return first.strftime("%H:%M UTC" if first.date() == _now().date() else "%Y-%m-%d %H:%M UTC")


def skipped_lines(sweep: str, live: dict[str, Claim], stale: dict[str, Claim], stale_s: float) -> list[str]:
    """Return the lines a driver prints about other runs' claims: one per run whose live claims make it skip trials,
    one per run whose stale claims it takes over."""
    lines = []
    for claims, live_ones in ((live, True), (stale, False)):
        by_run: dict[tuple, list[Claim]] = {}
        for claim in claims.values():
            by_run.setdefault((claim.run_id, claim.host), []).append(claim)
        for group in by_run.values():
            n, who = len(group), group[0]
            trials = f"{n} trial{'' if n == 1 else 's'}"
            if live_ones:
                lines.append(f"[{sweep}] {trials} {'is' if n == 1 else 'are'} being trained by another run on host "
                             f"{who.host} since {since(group)}; skipped (run {who.run_id}, pid {who.pid}; a claim "
                             f"with no heartbeat for {_limit(stale_s)} is taken over)")  # fmt: skip
            else:
                last = max(c.heartbeat_at for c in group).strftime("%H:%M:%S UTC")
                lines.append(f"[{sweep}] {trials} claimed by run {who.run_id} on host {who.host} with no heartbeat "
                             f"since {last} (over {_limit(stale_s)}): stale claims, taken over")  # fmt: skip
    return lines


def _limit(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def supported_or_warning(store: str) -> str | None:
    """Return None when the store supports claims, else the one-line warning a driver prints."""
    if not is_uri(store) or Claims(store, "_").supported:
        return None
    scheme = urlsplit(store).scheme
    return (
        f"warning: a {scheme}:// store cannot claim trials (no exclusive create); two runs sharing it may train "
        "the same trial twice; use a local or NFS folder or s3://"
    )
