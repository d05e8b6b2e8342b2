"""Verdict words, defined once, and the ``Check`` record every family writes.

- ``pass``: the check showed what it tests (a bound met with confidence, a contract held).
- ``fail``: it measured a difference between candidate and reference, or a user-set bound surely
  missed. Only this fails a migration step.
- ``inconclusive``: neither could be shown at this size; the detail says what would settle it
  ("need about N more prompts") and the check's power. Never a pass, never "the candidate is
  broken"; what it does to the exit status is ``--parity-inconclusive``.
- ``shared``: behaviour both engines share (both ignore an option, both reject at 2048): a
  finding to know about, not a difference, never a failure of the migration.
- ``warn``: a difference worth a look that the check does not gate on (e.g. different limits).
- ``skip`` / ``error``: not run / could not run (an engine died, bad input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["PASS", "FAIL", "INCONCLUSIVE", "SHARED", "WARN", "SKIP", "ERROR", "VERDICTS", "SEVERITY",
           "Check", "worst_of"]

PASS, FAIL, INCONCLUSIVE, SHARED, WARN, SKIP, ERROR = "pass", "fail", "inconclusive", "shared", "warn", "skip", "error"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, SHARED, WARN, SKIP, ERROR)
# lower is worse; the order a step's worst finding is chosen by
SEVERITY = {FAIL: 0, ERROR: 0, INCONCLUSIVE: 1, WARN: 2, SHARED: 3, PASS: 4, SKIP: 5}


def worst_of(verdicts: Any) -> str:
    vs = list(verdicts)
    return min(vs, key=lambda v: SEVERITY.get(v, 6)) if vs else SKIP


@dataclass
class Check:
    """One named check with its verdict, in one migration step."""

    step: Optional[str]
    name: str
    verdict: str  # one of VERDICTS
    detail: str = ""
    numbers: dict = field(default_factory=dict)
    nodeid: Optional[str] = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; use one of {', '.join(VERDICTS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail,
                "numbers": self.numbers, "nodeid": self.nodeid}
