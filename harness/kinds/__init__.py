"""Trial kinds: what differs per design class inside the one trial loop (`harness.loop`), one file per kind.

The registry (`KINDS`, `register_kind`, `kind_for`) and the interface (`TrialKind`, `Setup`) live in
`harness.kinds.base`; importing this package registers the built-in kinds. No kind file imports another.
"""

from __future__ import annotations

from harness.kinds import coop, fixed, mutual  # noqa: F401  (importing a kind registers it)
from harness.kinds.base import KINDS, Setup, TrialKind, kind_for, register_kind

__all__ = ["KINDS", "Setup", "TrialKind", "kind_for", "register_kind"]
