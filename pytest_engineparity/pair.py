"""The objects the fixtures hand to tests: ``EnginePair`` and ``EngineView``.

They compare and record; tolerances can be narrowed per test (``with_tolerance``). Plain
objects: the plugin injects the session and a ``record`` callback for the current test.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

from .baseline import BaselineChecks
from .compare import EquivalencePolicy
from .latency import LatencyChecks
from .quality import QualityChecks
from .truncation import TruncationChecks
from .session import Check, EngineHandle, PairResult, ParityMismatch, ParitySession
from .types import Completion, EngineInfo, GenerationRequest

__all__ = ["EnginePair", "EngineView"]

Recorder = Callable[[str, str, str, dict], None]  # (name, verdict, detail, numbers)


class EngineView:
    """One engine alone: direct calls (no caching), its info and limits."""

    def __init__(self, handle: EngineHandle):
        self._h = handle

    @property
    def name(self) -> str:
        return self._h.name

    @property
    def info(self) -> EngineInfo:
        self._h.ensure_started()
        assert self._h.info is not None
        return self._h.info

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self._h.generate(list(requests), label="direct call")

    def tokenize(self, text: str) -> list[int]:
        return self._h.ensure_started().tokenize(text)


class EnginePair(LatencyChecks, TruncationChecks, QualityChecks, BaselineChecks):
    """The pair fixture. Check families are mixins, one module each (``latency``,
    ``truncation``, ``quality``, ``baseline``); their methods use ``self._s`` (the
    ParitySession), ``self.reference`` / ``self.candidate`` (EngineView), ``self._record(name,
    verdict, detail, numbers)`` and raise ``ParityMismatch`` on failure."""

    def __init__(self, session: ParitySession, record: Recorder, policy: Optional[EquivalencePolicy] = None,
                 properties: Optional[list] = None):
        self._s = session
        self._record = record
        self.policy = policy or session.policy
        self._props = properties if properties is not None else []
        self.reference = EngineView(session.reference)
        self.candidate = EngineView(session.candidate)

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
            hard = bool(c.logprobs.failures) or (not c.exact and not c.logprobs.available
                                                 and self.policy.require_logprobs_close)
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

    def suite_verdict(self, min_rate: Optional[float] = None, confidence: Optional[float] = None,
                      requests: Optional[Sequence[GenerationRequest]] = None) -> Any:
        from .stats import equivalence_rate_verdict  # scipy: imported when a suite-level check runs

        results = self.results(requests)
        n_eq = sum(r.equivalent for r in results)
        return equivalence_rate_verdict(
            n_eq, len(results), min_rate if min_rate is not None else self._s.cfg.min_equivalence,
            confidence if confidence is not None else self._s.cfg.confidence)

    def assert_suite_equivalent(self, min_rate: Optional[float] = None, confidence: Optional[float] = None,
                                requests: Optional[Sequence[GenerationRequest]] = None,
                                name: str = "equivalence-rate") -> Any:
        """Pass only if the lower confidence bound of the equivalence rate reaches ``min_rate``.

        Records a check named ``equivalence-rate`` with the numbers, the exact-match rate and each
        engine's own noise floor (exact-match rate against itself).
        """
        v = self.suite_verdict(min_rate, confidence, requests)
        results = self.results(requests)
        n_exact = sum(r.exact for r in results)
        numbers = {**v.to_dict(), "n_exact": n_exact,
                   "exact_rate": n_exact / len(results) if results else 0.0,
                   "noise_floor": self._s.noise_floor}
        nf = ", ".join(f"{role} vs itself {d['n_exact']}/{d['n']} exact" for role, d in self._s.noise_floor.items())
        detail = f"{v.message}; cross-engine exact {n_exact}/{len(results)}" + (f" (noise floor: {nf})" if nf else "")
        self._record(name, "pass" if v.passed else "fail", detail, numbers)
        if not v.passed:
            worst = [r for r in results if not r.equivalent][:3]
            lines = [f"suite equivalence gate failed: {detail}"]
            for r in worst:
                lines.append("")
                lines.append(r.explain())
            raise ParityMismatch("\n".join(lines))
        return v

    def assert_self_consistent(self, role: str = "reference", min_rate: Optional[float] = None) -> Any:
        """The engine against itself (the suite re-run in shuffled order, split in two calls):
        equivalent by the same layered rule as the pair, with the same confidence bound. A model
        that cannot reproduce itself is not a stable baseline to migrate from."""
        from .compare import compare_pair
        from .stats import equivalence_rate_verdict

        if role not in ("reference", "candidate"):
            raise ValueError(f"role must be 'reference' or 'candidate', got {role!r}")
        self.results()
        if not self._s.cfg.noise_floor:
            raise ParityMismatch("self-consistency needs the noise-floor runs: do not pass --parity-noise-floor=false")
        keys = [k for k in self._s.suite_keys() if k in self._s.self_runs[role]]
        firsts = [self._s.results[role][k] for k in keys]
        seconds = [self._s.self_runs[role][k] for k in keys]
        sims = self._s.similarities([(a.text, b.text) for a, b in zip(firsts, seconds)])
        comps = [compare_pair(a, b, sim, self.policy) for a, b, sim in zip(firsts, seconds, sims)]
        n_eq = sum(c.equivalent for c in comps)
        v = equivalence_rate_verdict(n_eq, len(comps), min_rate if min_rate is not None else self._s.cfg.min_equivalence,
                                     self._s.cfg.confidence)
        n_exact = sum(c.exact for c in comps)
        name = getattr(self, role).name
        detail = f"{name} vs itself: {v.message}; exact {n_exact}/{len(comps)}"
        self._record(f"self-consistency:{role}", "pass" if v.passed else "fail", detail,
                     {**v.to_dict(), "n_exact": n_exact})
        if not v.passed:
            bad = [(k, c) for k, c in zip(keys, comps) if not c.equivalent][:3]
            lines = [f"{name} is not consistent with itself: {detail}"]
            for k, c in bad:
                lines.append(f"  {self._s.requests[k].label()}: {c.reason}")
            raise ParityMismatch("\n".join(lines))
        return v

    def assert_error_rate_parity(self, requests: Sequence[GenerationRequest], max_increase: float = 0.01,
                                 alpha: float = 0.05) -> Any:
        """The candidate must not fail more requests than the reference, paired request by
        request (exact McNemar on the discordant pairs, non-inferiority margin ``max_increase``).
        "worse" fails; "inconclusive" is recorded as such with the sample size it needs."""
        from .stats import paired_accuracy

        results = self.results(requests)
        ref_ok = [r.reference.ok for r in results]
        cand_ok = [r.candidate.ok for r in results]
        v = paired_accuracy(ref_ok, cand_ok, max_drop=max_increase, alpha=alpha)
        ref_err = [r for r in results if not r.reference.ok]
        cand_err = [r for r in results if not r.candidate.ok]
        only_cand = [r for r in results if r.reference.ok and not r.candidate.ok]
        numbers = {"n": len(results), "reference_errors": len(ref_err), "candidate_errors": len(cand_err),
                   "candidate_only_errors": len(only_cand), "verdict": v.verdict, "mcnemar_p": v.mcnemar_p}
        detail = (f"errors: reference {len(ref_err)}/{len(results)}, candidate {len(cand_err)}/{len(results)}"
                  f" ({len(only_cand)} only on the candidate); {v.message}")
        if only_cand:
            detail += "; first candidate-only error: " + f"{only_cand[0].request.label()}: {only_cand[0].candidate.error}"
        verdict = {"equivalent": "pass", "worse": "fail"}.get(v.verdict, "inconclusive")
        self._record("error-rate", verdict, detail, numbers)
        if verdict == "fail":
            raise ParityMismatch(f"candidate fails more requests than the reference: {detail}")
        return v

    def record_check(self, name: str, verdict: str, detail: str = "", numbers: Optional[dict] = None) -> None:
        self._record(name, verdict, detail, numbers or {})


def make_recorder(session: ParitySession, step: Optional[str], nodeid: Optional[str]) -> Recorder:
    def record(name: str, verdict: str, detail: str, numbers: dict) -> None:
        session.record(Check(step, name, verdict, detail, numbers, nodeid))
    return record
