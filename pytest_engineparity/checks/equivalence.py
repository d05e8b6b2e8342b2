"""The equivalence family (``engine_pair.equivalence``): suite-level gates over the per-prompt
comparisons: the equivalence rate, each engine against itself, and error-rate parity.

Every gate gives pass / fail / inconclusive (``verdicts``): ``fail`` only when the rate is shown
to be below the bound (or the candidate shown to fail more requests), at the family-wise alpha
share of one statistical decision (``cfg.alpha_per_decision``); ``inconclusive`` says how many
prompts would settle it and the power at this size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..errors import ParityMismatch
from ..types import GenerationRequest
from .verdicts import FAIL, INCONCLUSIVE, PASS

if TYPE_CHECKING:  # pragma: no cover
    from .context import CheckContext

__all__ = ["EquivalenceChecks"]


class EquivalenceChecks:
    name = "equivalence"
    section = None  # its numbers live in the report's summary and checks

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    # -- helpers -----------------------------------------------------------------------------
    def _results(self, requests: Optional[Sequence[GenerationRequest]] = None) -> list:
        if requests is None:
            return self._ctx.suite_results()
        self._ctx.register(requests)
        return [self._ctx.result(r) for r in requests]

    def suite_verdict(self, min_rate: Optional[float] = None, confidence: Optional[float] = None,
                      requests: Optional[Sequence[GenerationRequest]] = None) -> Any:
        from .stats import equivalence_rate_verdict  # scipy: imported when a suite-level check runs

        cfg = self._ctx.cfg
        results = self._results(requests)
        n_eq = sum(r.equivalent for r in results)
        return equivalence_rate_verdict(
            n_eq, len(results), min_rate if min_rate is not None else cfg.min_equivalence,
            confidence if confidence is not None else cfg.confidence, alpha_fail=cfg.alpha_per_decision)

    # -- gates -------------------------------------------------------------------------------
    def assert_suite_equivalent(self, min_rate: Optional[float] = None, confidence: Optional[float] = None,
                                requests: Optional[Sequence[GenerationRequest]] = None,
                                name: str = "equivalence-rate") -> Any:
        """The equivalence rate against ``min_rate``: ``pass`` when its lower confidence bound
        reaches it, ``fail`` when the rate is shown to be below it, else ``inconclusive`` (recorded
        with the prompts needed; the test itself passes: not enough evidence is not a failure).

        Records a check with the numbers, the exact-match rate and each engine's noise floor.
        """
        v = self.suite_verdict(min_rate, confidence, requests)
        results = self._results(requests)
        n_exact = sum(r.exact for r in results)
        nf_d = dict(self._ctx.noise_floor)
        numbers = {**v.to_dict(), "n_exact": n_exact,
                   "exact_rate": n_exact / len(results) if results else 0.0, "noise_floor": nf_d,
                   "layers": _layers(results)}
        nf = ", ".join(f"{role} vs itself {d['n_exact']}/{d['n']} exact" for role, d in nf_d.items())
        detail = f"{v.message}; cross-engine exact {n_exact}/{len(results)}" + (f" (noise floor: {nf})" if nf else "")
        self._ctx.record(name, v.verdict, detail, numbers)
        if v.verdict == FAIL:
            worst = [r for r in results if not r.equivalent][:3]
            lines = [f"suite equivalence gate failed: {detail}"]
            for r in worst:
                lines.append("")
                lines.append(r.explain())
            raise ParityMismatch("\n".join(lines))
        return v

    def assert_self_consistent(self, role: str = "reference", min_rate: Optional[float] = None) -> Any:
        """The engine against itself (the suite re-run in shuffled order, split in two calls):
        equivalent by the same layered rule as the pair, with the same three-way verdict. A model
        shown not to reproduce itself is not a stable baseline to migrate from."""
        from .compare import compare_pair
        from .stats import equivalence_rate_verdict

        ctx = self._ctx
        view = ctx.engine(role)
        ctx.suite_results()
        if not ctx.cfg.noise_floor:
            raise ParityMismatch("self-consistency needs the noise-floor runs: do not pass --parity-noise-floor=false")
        firsts, seconds, labels = [], [], []
        done = ctx.completions(role)
        for req in ctx.suite_requests():
            again = ctx.self_run(role, req)
            if again is not None and req.key() in done:
                firsts.append(done[req.key()])
                seconds.append(again)
                labels.append(req.label())
        sims = ctx.similarities([(a.text, b.text) for a, b in zip(firsts, seconds)])
        comps = [compare_pair(a, b, sim, ctx.policy) for a, b, sim in zip(firsts, seconds, sims)]
        n_eq = sum(c.equivalent for c in comps)
        v = equivalence_rate_verdict(n_eq, len(comps), min_rate if min_rate is not None else ctx.cfg.min_equivalence,
                                     ctx.cfg.confidence, alpha_fail=ctx.cfg.alpha_per_decision)
        n_exact = sum(c.exact for c in comps)
        detail = f"{view.name} vs itself: {v.message}; exact {n_exact}/{len(comps)}"
        ctx.record(f"self-consistency:{role}", v.verdict, detail, {**v.to_dict(), "n_exact": n_exact})
        if v.verdict == FAIL:
            bad = [(lab, c) for lab, c in zip(labels, comps) if not c.equivalent][:3]
            lines = [f"{view.name} is not consistent with itself: {detail}"]
            for lab, c in bad:
                lines.append(f"  {lab}: {c.reason}")
            raise ParityMismatch("\n".join(lines))
        return v

    def assert_error_rate_parity(self, requests: Sequence[GenerationRequest], max_increase: float = 0.03,
                                 alpha: Optional[float] = None) -> Any:
        """The candidate must not fail more requests than the reference, paired request by
        request (exact McNemar on the discordant pairs, non-inferiority margin ``max_increase``;
        3 points by default: the built-in 120 replayed requests can show it when both engines fail
        the same requests, a 1-point margin would need about 270).
        "worse" fails; "inconclusive" is recorded as such with the sample size it needs; both
        engines failing the same requests is ``pass`` (a shared behaviour, listed in the detail)."""
        from .stats import paired_accuracy

        results = self._results(requests)
        ref_ok = [r.reference.ok for r in results]
        cand_ok = [r.candidate.ok for r in results]
        a = self._ctx.cfg.alpha_per_decision if alpha is None else alpha
        v = paired_accuracy(ref_ok, cand_ok, max_drop=max_increase, alpha=a,
                            alpha_equivalence=1.0 - self._ctx.cfg.confidence)
        ref_err = [r for r in results if not r.reference.ok]
        cand_err = [r for r in results if not r.candidate.ok]
        only_cand = [r for r in results if r.reference.ok and not r.candidate.ok]
        both = [r for r in results if not r.reference.ok and not r.candidate.ok]
        numbers = {"n": len(results), "reference_errors": len(ref_err), "candidate_errors": len(cand_err),
                   "candidate_only_errors": len(only_cand), "shared_errors": len(both), "verdict": v.verdict,
                   "mcnemar_p": v.mcnemar_p, "power": v.power, "needed": v.needed}
        detail = (f"errors: reference {len(ref_err)}/{len(results)}, candidate {len(cand_err)}/{len(results)}"
                  f" ({len(only_cand)} only on the candidate, {len(both)} shared); {v.message}")
        if only_cand:
            detail += "; first candidate-only error: " + f"{only_cand[0].request.label()}: {only_cand[0].candidate.error}"
        verdict = {"equivalent": PASS, "worse": FAIL}.get(v.verdict, INCONCLUSIVE)
        self._ctx.record("error-rate", verdict, detail, numbers)
        if verdict == FAIL:
            raise ParityMismatch(f"candidate fails more requests than the reference: {detail}")
        return v


def _layers(results: Sequence[Any]) -> dict[str, int]:
    """How many comparisons each layer decided (exact ids, logprob closeness, ties, similarity)."""
    out: dict[str, int] = {}
    for r in results:
        for layer in getattr(r.comparison, "layers", None) or []:
            out[layer] = out.get(layer, 0) + 1
    return out
