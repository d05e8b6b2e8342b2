"""The object the fixtures hand to tests: ``EnginePair`` (and ``EngineView`` for one engine).

It compares and records; tolerances can be narrowed per test (``with_tolerance``). Check families
are composed, not inherited: ``engine_pair.truncation``, ``engine_pair.latency``, ... (one object
per family over one narrow ``CheckContext``, listed once in ``checks.FAMILIES``), and every public
method of a family is also reachable as ``engine_pair.<method>`` (today's documented API).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

from .checks.compare import EquivalencePolicy
from .errors import ParityMismatch
from .session import Check, EngineView, PairResult, ParitySession, SessionContext
from .types import GenerationRequest

__all__ = ["EnginePair", "EngineView"]

Recorder = Callable[[str, str, str, dict], None]  # (name, verdict, detail, numbers)


class EnginePair:
    """The pair fixture: per-request comparisons here, suite-level families composed."""

    def __init__(self, session: ParitySession, record: Recorder, policy: Optional[EquivalencePolicy] = None,
                 properties: Optional[list] = None):
        self._s = session
        self._record = record
        self.policy = policy or session.policy
        self._props = properties if properties is not None else []
        self._ctx = SessionContext(session, record, self.policy, self._props)
        self.context = self._ctx  # the CheckContext the families work through
        self.reference = self._ctx.reference
        self.candidate = self._ctx.candidate
        self._families: dict[str, Any] = {}

    def family(self, name: str) -> Any:
        """The check family ``name`` (see ``checks.FAMILIES``), built once per fixture."""
        from .checks import FAMILIES, family_class

        if name not in FAMILIES:
            raise AttributeError(f"no check family {name!r}; families: {', '.join(FAMILIES)}")
        if name not in self._families:
            self._families[name] = family_class(name)(self._ctx)
        return self._families[name]

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        from .checks import FAMILIES, HOOKS, family_class

        if attr in FAMILIES:
            return self.family(attr)
        for name in FAMILIES:
            cls = family_class(name)
            if attr in vars(cls) and not attr.startswith("_") and attr not in HOOKS:
                return getattr(self.family(name), attr)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {attr!r} (nor has any check family)")

    def preflight(self) -> list[str]:
        """Session start: every family that has a ``preflight()`` runs it (once both engines are
        up, before the first test); their lines are shown at the top of the run."""
        from .checks import FAMILIES, family_class

        lines: list[str] = []
        for name in FAMILIES:
            if callable(getattr(family_class(name), "preflight", None)):
                lines += self.family(name).preflight()
        return lines

    def with_tolerance(self, similarity: Optional[float] = None, top_k: Optional[int] = None,
                       require_logprobs_close: Optional[bool] = None) -> "EnginePair":
        """A copy whose equivalence rule is narrowed (or, explicitly, relaxed) for this test."""
        changes: dict[str, Any] = {}
        if similarity is not None:
            changes["similarity_threshold"] = similarity
        if top_k is not None:
            changes["top_k"] = top_k
        if require_logprobs_close is not None:
            changes["require_logprobs_close"] = require_logprobs_close
        return EnginePair(self._s, self._record, dataclasses.replace(self.policy, **changes), self._props)

    # -- one request -------------------------------------------------------------------------
    def run(self, request: GenerationRequest) -> PairResult:
        res = self._s.result(request, self.policy)
        c = res.comparison
        self._props.extend([
            ("parity_reference", res.ref_name), ("parity_candidate", res.cand_name),
            ("parity_exact", str(c.exact).lower()), ("parity_equivalent", str(c.equivalent).lower()),
            ("parity_divergence", "" if c.divergence is None else str(c.divergence)),
            ("parity_similarity", "" if c.similarity is None else f"{c.similarity:.4f}"),
        ])
        return res

    def assert_equivalent(self, request: GenerationRequest) -> PairResult:
        """Exact, or logprob-close up to the fork and semantically similar after it."""
        return self.run(request).assert_equivalent()

    def assert_close(self, request: GenerationRequest) -> PairResult:
        """No hard evidence of breakage on this request: both answered (or both rejected it
        alike) and, up to and including the first divergent token, each engine's token is in
        the other's top-k. A near-tie fork followed by a different wording passes here; whether
        such forks stay rare enough is the suite-level ``assert_suite_equivalent`` gate."""
        res = self.run(request)
        c = res.comparison
        r_ok, c_ok = res.reference.ok, res.candidate.ok
        if not r_ok or not c_ok:
            hard = not c.equivalent  # one side failed, or both rejected it in different ways
        else:
            # missing logprobs count only where both engines can return them (the comparison
            # knows their capabilities): a text-only candidate is judged by the suite gate
            hard = bool(c.logprobs.failures) or c.missing_required_logprobs
        if hard:
            raise ParityMismatch(res.explain())
        return res

    # -- the suite ---------------------------------------------------------------------------
    def results(self, requests: Optional[Sequence[GenerationRequest]] = None) -> list[PairResult]:
        """Every request the suite declared (or just ``requests``), each engine having run the
        suite as one batch."""
        if requests is None:
            return self._s.all_results(self.policy)
        self._s.register(requests)
        return [self._s.result(r, self.policy) for r in requests]

    def record_check(self, name: str, verdict: str, detail: str = "", numbers: Optional[dict] = None) -> None:
        self._record(name, verdict, detail, numbers or {})


def make_recorder(session: ParitySession, step: Optional[str], nodeid: Optional[str]) -> Recorder:
    def record(name: str, verdict: str, detail: str, numbers: dict) -> None:
        session.record(Check(step, name, verdict, detail, numbers, nodeid))
    return record
