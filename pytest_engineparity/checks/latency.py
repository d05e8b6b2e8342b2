"""Latency checks: SLA bounds and candidate-vs-reference slowdown, measured the same way on both engines.

What is measured (per request, from ``Completion.timings``; the worker's step clock for in-process
engines, the client's stream clock for HTTP engines):

* **TTFT**: time to the first output token;
* **TPOT**: mean time per output token after the first (``(t_last - t_first) / (n - 1)``; requests
  with fewer than two tokens have none, as in vLLM's ``benchmark_serving``);
* **ITL**: every gap between two successive output tokens, pooled over requests;
* **e2e**: time to the last output token;
* output tokens, and per run the **throughput** (output tokens / wall time of the run, taken on
  the pytest side around the engine call, for every kind of engine alike).

Which requests: the suite's *declared* requests (``ParitySession.suite_keys()``: auxiliary requests such as task items are left out), sent again for
timing, never the cached parity batch: the parity batch is each engine's first work after start
(cold caches, lazy compilation, allocator growth) and its numbers would mostly measure that.
Before the timed runs each engine gets ``--parity-warmup`` requests (default 2; excluded and
reported as such), then the declared requests ``--parity-latency-runs`` times, reference then
candidate in each run, each run as one call per engine. Samples of all runs are pooled. Engines
with a prefix cache (vLLM) see prompts they have seen before: TTFT then reflects a warm prefix
cache; set ``enable_prefix_caching = false`` in the engine's args to time cold prefill.

Load shape: an in-process engine (``hf``, ``vllm``, ``trtllm``) gets each run as one batch; the
HTTP engine (``openai``) streams the run with its own ``concurrency`` / ``request_rate``
(Poisson arrivals) from its args. The report says which.

Verdicts:

* SLA (``--parity-sla="ttft_p99<=500ms,tpot_p50<=40ms,e2e_p99<=8s,throughput>=100tok/s"``), on
  the candidate: a distribution-free confidence interval of the percentile (``stats.percentile_ci``)
  decides; ``fail`` only when the CI lies wholly beyond the bound, ``pass`` when wholly within,
  ``inconclusive`` otherwise, with the number of samples that would settle it. Throughput is one
  number per run: its CI is a Student-t interval over the runs, so one run is inconclusive.
* Slowdown (``--parity-max-slowdown``, default 1.10): per metric and percentile, a bootstrap CI of
  candidate / reference (``stats.regression_verdict``); ``fail`` only when the CI lies wholly
  above the allowed ratio, ``inconclusive, need about N more samples`` when it straddles.
* Goodput, as ``vllm bench serve --goodput`` computes it: a request is good when its TTFT, TPOT
  (0 for one-token outputs) and e2e each meet the SLA values given for them; reported as
  good requests per second and as the share of requests.

Nothing heavy is imported at module load (``parse_sla`` runs while pytest configures);
numpy / scipy come in with the first measurement.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence, Union

from ..runtime.gpumem import gpu_memory_bytes
from ..types import Completion, EngineInfo, GenerationRequest

if TYPE_CHECKING:  # pragma: no cover
    from .context import CheckContext
    from .stats import RegressionVerdict

__all__ = [
    "METRICS",
    "SLOWDOWN_METRICS",
    "SLOWDOWN_STATS",
    "SlaBound",
    "parse_sla",
    "RequestSample",
    "RunStats",
    "EngineLatency",
    "LatencyMeasurement",
    "SlaResult",
    "SlowdownResult",
    "evaluate_sla",
    "slowdown_checks",
    "goodput",
    "load_shape",
    "gpu_memory_bytes",
    "measure",
    "store_measurement",
    "stored_measurement",
    "option_given",
    "html_section",
    "LatencyChecks",
]

METRICS = ("ttft", "tpot", "itl", "e2e")  # per-request latency metrics, seconds
PER_REQUEST_SLO = ("ttft", "tpot", "e2e")  # metrics vLLM's goodput judges per request
SLOWDOWN_METRICS = ("ttft", "tpot", "e2e")
SLOWDOWN_STATS = ("p50", "p99")
Verdict = Literal["pass", "fail", "inconclusive"]

from ..sla import SlaBound, parse_sla  # noqa: F401  (parsed low, re-exported)


# --------------------------------------------------------------------------------------------
# samples


@dataclass
class RequestSample:
    """One request's latency numbers (seconds), or a failed request."""

    ok: bool
    ttft: Optional[float] = None
    tpot: Optional[float] = None  # None with fewer than two output tokens
    e2e: Optional[float] = None
    itl: list = field(default_factory=list)
    output_tokens: int = 0
    run: int = 0
    source: str = "unknown"
    error: Optional[str] = None

    @classmethod
    def from_completion(cls, c: Completion, run: int = 0) -> "RequestSample":
        t = c.timings
        if not c.ok:
            return cls(ok=False, run=run, source=t.source, error=c.error)
        times = [float(x) for x in (t.token_times or [])]
        n_out = c.output_token_count or len(times)
        ttft = t.ttft if t.ttft is not None else (times[0] if times else None)
        e2e = t.e2e if t.e2e is not None else (times[-1] if times else None)
        return cls(ok=True, ttft=_opt(ttft), tpot=_opt(t.tpot), e2e=_opt(e2e), itl=[float(g) for g in t.itl],
                   output_tokens=int(n_out), run=run, source=t.source)


def _opt(x: Optional[float]) -> Optional[float]:
    return None if x is None else float(x)


@dataclass
class RunStats:
    """One timed run on one engine: the declared requests, one call."""

    run: int
    requests: int
    failed: int
    output_tokens: int
    duration_s: float  # wall time of the call, on the pytest side
    engine_span_s: Optional[float] = None  # latest e2e on the engine's own clock

    @property
    def throughput(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput_tok_s": self.throughput}


@dataclass
class EngineLatency:
    """Everything timed on one engine: per-request samples of every run, run totals, load, memory."""

    role: str
    name: str
    kind: str = "unknown"
    samples: list = field(default_factory=list)  # list[RequestSample]
    runs: list = field(default_factory=list)  # list[RunStats]
    warmup: int = 0
    load: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)

    @classmethod
    def from_runs(cls, role: str, name: str, runs: Sequence[tuple[Sequence[Completion], float]], *,
                  kind: str = "unknown", warmup: int = 0, load: Optional[dict] = None,
                  memory: Optional[dict] = None) -> "EngineLatency":
        """``runs``: one ``(completions, wall seconds)`` pair per timed run."""
        lat = cls(role, name, kind, warmup=warmup, load=dict(load or {}), memory=dict(memory or {}))
        for i, (outs, wall) in enumerate(runs, 1):
            rs = [RequestSample.from_completion(c, i) for c in outs]
            lat.samples.extend(rs)
            spans = [s.e2e for s in rs if s.ok and s.e2e is not None]
            lat.runs.append(RunStats(i, len(rs), sum(not s.ok for s in rs), sum(s.output_tokens for s in rs if s.ok),
                                     float(wall), max(spans) if spans else None))
        return lat

    def values(self, metric: str) -> list[float]:
        """Samples of one metric over every successful request of every run (ITL: every gap)."""
        if metric == "itl":
            return [g for s in self.samples if s.ok for g in s.itl]
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        return [v for s in self.samples if s.ok for v in [getattr(s, metric)] if v is not None]

    def run_labels(self, metric: str) -> list[int]:
        """The run each of ``values(metric)`` came from (aligned with it)."""
        if metric == "itl":
            return [s.run for s in self.samples if s.ok for _ in s.itl]
        return [s.run for s in self.samples if s.ok and getattr(s, metric) is not None]

    @property
    def failed(self) -> int:
        return sum(not s.ok for s in self.samples)

    @property
    def duration_s(self) -> float:
        return sum(r.duration_s for r in self.runs)

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.runs)

    @property
    def throughput(self) -> Optional[float]:
        """Output tokens per second over all runs (None before any run)."""
        d = self.duration_s
        return self.output_tokens / d if d > 0 else None

    @property
    def timing_sources(self) -> list[str]:
        return sorted({s.source for s in self.samples})

    def summary(self, cdf_points: int = 200, keep_samples: bool = True) -> dict[str, Any]:
        import numpy as np

        metrics: dict[str, Any] = {}
        for m in METRICS:
            x = np.sort(np.asarray(self.values(m), dtype=float))
            d: dict[str, Any] = {"n": int(x.size)}
            if x.size:
                d.update({"mean": float(x.mean()), "min": float(x[0]), "max": float(x[-1]),
                          **{f"p{p}": float(np.quantile(x, p / 100.0)) for p in (50, 90, 99)},
                          "cdf": _cdf_points(x, cdf_points)})
                if keep_samples and m != "itl":
                    d["samples"] = [round(float(v), 6) for v in self.values(m)]
            metrics[m] = d
        return {"role": self.role, "name": self.name, "kind": self.kind,
                "timing_source": ", ".join(self.timing_sources) or None,
                "warmup_requests": self.warmup, "load": self.load,
                "requests": len(self.samples), "failed_requests": self.failed,
                "output_tokens": self.output_tokens, "duration_s": self.duration_s,
                "throughput_tok_s": self.throughput,
                "runs": [r.to_dict() for r in self.runs], "metrics": metrics, "peak_memory": self.memory}


def _cdf_points(x: Any, k: int) -> list[list[float]]:
    """``[[value, cumulative share], ...]``: every sample when few, else ``k`` evenly spaced quantiles."""
    import numpy as np

    n = int(x.size)
    if n <= k:
        return [[round(float(v), 7), round((i + 1) / n, 5)] for i, v in enumerate(x)]
    qs = np.linspace(1.0 / k, 1.0, k)
    return [[round(float(v), 7), round(float(q), 5)] for v, q in zip(np.quantile(x, qs), qs)]


@dataclass
class LatencyMeasurement:
    """Both engines' latency samples from one session (or recorded ones)."""

    reference: EngineLatency
    candidate: EngineLatency
    requests: int = 0  # declared requests per run
    runs: int = 1
    warmup: int = 0
    note: str = ""

    def engine(self, role: str) -> EngineLatency:
        if role not in ("reference", "candidate"):
            raise ValueError(f"engine must be 'reference' or 'candidate', got {role!r}")
        return self.reference if role == "reference" else self.candidate

    def summary(self, bounds: Sequence[SlaBound] = ()) -> dict[str, Any]:
        return _jsonable({
            "requests_per_run": self.requests, "runs": self.runs, "warmup_requests": self.warmup,
            "note": self.note,
            "engines": {"reference": self.reference.summary(), "candidate": self.candidate.summary()},
            "bounds": [b.to_dict() for b in bounds],
            "goodput": {"reference": goodput(self.reference, bounds), "candidate": goodput(self.candidate, bounds)}
            if any(b.metric in PER_REQUEST_SLO for b in bounds) else None,
            "sla": [], "regression": [],
        })


# --------------------------------------------------------------------------------------------
# formatting


def _fmt_s(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) < 1.0:
        ms = x * 1000.0
        return f"{ms:.2f} ms" if abs(ms) < 10 else f"{ms:.1f} ms"
    return f"{x:.2f} s"


def _fmt_tok(x: Optional[float]) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1f} tok/s"


def _fmt(bound: SlaBound, x: Optional[float]) -> str:
    return _fmt_tok(x) if bound.metric == "throughput" else _fmt_s(x)


def _jsonable(x: Any) -> Any:
    """Plain JSON: dataclasses to dicts, non-finite floats to None, tuples to lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "to_dict"):
        return _jsonable(x.to_dict())
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _jsonable(x.item())
    return x


# --------------------------------------------------------------------------------------------
# SLA


@dataclass(frozen=True)
class SlaResult:
    """One SLA bound judged on one engine's samples."""

    bound: SlaBound
    engine: str  # engine name
    role: str
    verdict: Verdict
    measured: Optional[float]  # the percentile (seconds) or the mean throughput over runs
    low: Optional[float]
    high: Optional[float]
    n: int  # samples (runs, for throughput)
    confidence: float
    samples_needed: Optional[int]  # total samples (runs, for throughput) that would settle it
    reference_measured: Optional[float]
    message: str

    @property
    def name(self) -> str:
        return self.bound.name

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"name": self.name, "bound": self.bound.to_dict(), "engine": self.engine, "role": self.role,
                          "verdict": self.verdict, "measured": self.measured, "low": self.low, "high": self.high,
                          "n": self.n, "confidence": self.confidence, "samples_needed": self.samples_needed,
                          "reference_measured": self.reference_measured, "message": self.message})


def _upper_rank(n: int, q: float, a: float) -> Optional[int]:
    """1-based rank of the order statistic ``percentile_ci`` uses as the upper bound (None: none)."""
    from scipy import stats as st

    k = int(st.binom.ppf(1.0 - a, n, q))  # smallest k with P(B <= k) >= 1 - a
    return k + 1 if k <= n - 1 else None


def _lower_rank(n: int, q: float, a: float) -> Optional[int]:
    from scipy import stats as st

    k = int(st.binom.ppf(a, n, q))  # smallest k with P(B <= k) >= a
    if st.binom.cdf(k, n, q) > a:
        k -= 1  # largest k with P(B <= k) <= a
    return k + 1 if k >= 0 else None


def _percentile_samples_needed(x: Sequence[float], q: float, limit: float, confidence: float) -> Optional[int]:
    """About how many samples would make ``percentile_ci`` settle ``percentile <= limit``, if the
    samples keep their present distribution (its share at or below ``limit``). None: never."""
    import numpy as np

    arr = np.asarray(x, dtype=float)
    if arr.size == 0:
        return None
    a = (1.0 - confidence) / 2.0
    share = float(np.mean(arr <= limit))
    if float(np.quantile(arr, q)) <= limit:
        if share <= q:
            return None

        def settled(n: int) -> bool:
            s = _upper_rank(n, q, a)
            return s is not None and share * n >= s
    else:
        if share >= q:
            return None

        def settled(n: int) -> bool:
            r = _lower_rank(n, q, a)
            return r is not None and share * n < r
    hi = max(2, arr.size)
    while not settled(hi):
        hi *= 2
        if hi > 10**8:
            return None
    lo = hi // 2 if hi > 2 else 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if settled(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _runs_needed(x: Sequence[float], bound: float, confidence: float) -> Optional[int]:
    """Runs for a Student-t CI of the mean to clear ``bound``, at the observed spread."""
    import numpy as np
    from scipy import stats as st

    arr = np.asarray(x, dtype=float)
    if arr.size < 2:
        return None
    mean, sd = float(arr.mean()), float(arr.std(ddof=1))
    gap = abs(mean - bound)
    if gap <= 0:
        return None
    if sd == 0:
        return int(arr.size)
    for m in range(2, 100_001):
        if st.t.ppf(1.0 - (1.0 - confidence) / 2.0, m - 1) * sd / math.sqrt(m) < gap:
            return m
    return None


def evaluate_sla(bound: SlaBound, lat: EngineLatency, confidence: float = 0.95,
                 reference: Optional[EngineLatency] = None, alpha_fail: Optional[float] = None) -> SlaResult:
    """Judge one bound on one engine: pass / fail only when the CI is wholly on one side.

    ``fail`` needs the bound surely missed at ``alpha_fail`` (the run's family-wise share; a wider
    interval than the pass side's) and, with two or more timed runs, every run's own estimate
    beyond the bound (a slow run is not taken for a slow engine). Samples of one batch that share
    the engine's step clock (few distinct values) are one measurement per run: the runs are then
    the samples (``_evaluate_per_run``)."""
    conf = f"{confidence * 100:g}%"
    ref_val = _point(bound, reference) if reference is not None else None
    ref_txt = f"; reference {reference.name}: {_fmt(bound, ref_val)}" if reference is not None else ""
    who = f"{lat.role} {lat.name}"
    if bound.metric == "throughput":
        return _evaluate_throughput(bound, lat, confidence, ref_val, ref_txt, who)
    from .stats import percentile_ci

    assert bound.q is not None and bound.stat is not None
    x = lat.values(bound.metric)
    label = f"{who} {bound.metric} {bound.stat}"
    if not x:
        return SlaResult(bound, lat.name, lat.role, "inconclusive", None, None, None, 0, confidence, None, ref_val,
                         f"{bound.name}: {label}: no samples (every request failed or produced too few tokens)")
    from .stats import is_step_clocked

    if is_step_clocked(x):
        return _evaluate_per_run(bound, lat, x, confidence, alpha_fail, ref_val, ref_txt, label)
    ci = percentile_ci(x, bound.q, confidence)
    meets = ci.meets(bound.limit)
    caveat = ""
    if meets is False and alpha_fail is not None and alpha_fail < (1 - confidence) / 2:
        strict = percentile_ci(x, bound.q, 1 - 2 * alpha_fail)
        if strict.meets(bound.limit) is not False:
            meets = None
            caveat = f"; not surely missed at the family-wise alpha share {alpha_fail:g}"
    if meets is not None:
        import numpy as np

        labels = lat.run_labels(bound.metric)
        by_run: dict[int, list[float]] = {}
        for v, r in zip(x, labels):
            by_run.setdefault(r, []).append(v)
        if len(by_run) >= 2:
            ests = [float(np.quantile(np.asarray(v), bound.q)) for v in by_run.values()]
            if any((e <= bound.limit) if meets is False else (e > bound.limit) for e in ests):
                meets = None
                caveat = ("; the runs disagree (per-run estimates " + ", ".join(_fmt_s(e) for e in ests)
                          + "): run-to-run variation, not a verdict")
    lo_t = _fmt_s(ci.low) if ci.low is not None else "-"
    hi_t = _fmt_s(ci.high) if ci.high is not None else "-"
    head = (f"{bound.name}: {label} = {_fmt_s(ci.estimate)} ({conf} CI {lo_t} to {hi_t}, n={ci.n}); "
            f"bound {_fmt_s(bound.limit)}")
    if meets is True:
        return SlaResult(bound, lat.name, lat.role, "pass", ci.estimate, ci.low, ci.high, ci.n, confidence, None,
                         ref_val, f"{head}: met with {conf} confidence{ref_txt}")
    if meets is False:
        return SlaResult(bound, lat.name, lat.role, "fail", ci.estimate, ci.low, ci.high, ci.n, confidence, None,
                         ref_val, f"{head}: surely missed (the whole CI is above the bound){ref_txt}")
    need = _percentile_samples_needed(x, bound.q, bound.limit, confidence)
    if need is None:
        tail = "the estimate sits at the bound: more samples are unlikely to settle it"
    else:
        tail = f"need about {need} samples (have {ci.n})"
        if lat.runs and lat.runs[0].requests:
            per_run = lat.runs[0].requests
            tail += f", i.e. --parity-latency-runs={math.ceil(need / per_run)} with {per_run} requests per run"
    why = "a CI bound is missing (too few samples for this percentile)" if ci.low is None or ci.high is None \
        else "the CI straddles the bound"
    if caveat:
        why = caveat.lstrip("; ")
    return SlaResult(bound, lat.name, lat.role, "inconclusive", ci.estimate, ci.low, ci.high, ci.n, confidence, need,
                     ref_val, f"{head}: inconclusive, {why}: {tail}{ref_txt}")


class _PerRun:
    """One value per run, summarised with a Student-t interval over the runs. Run-to-run variation
    of a latency or a throughput is multiplicative (a run slowed by other work is slower by a
    factor), so where every value is positive the interval is taken on the log scale: it stays
    positive however noisy the runs are, and its centre is the geometric mean."""

    def __init__(self, values: Sequence[float]):
        import numpy as np

        self.n = len(values)
        self.logs = all(v > 0 for v in values)
        self.y = [math.log(v) for v in values] if self.logs else [float(v) for v in values]
        m = float(np.mean(self.y))
        self.center = math.exp(m) if self.logs else m
        self.what = "geometric mean" if self.logs else "mean"

    def interval(self, confidence: float) -> tuple[float, float]:
        import numpy as np
        from scipy import stats as st

        m, sd = float(np.mean(self.y)), float(np.std(self.y, ddof=1))
        half = float(st.t.ppf(1.0 - (1.0 - confidence) / 2.0, self.n - 1)) * sd / math.sqrt(self.n)
        return (math.exp(m - half), math.exp(m + half)) if self.logs else (m - half, m + half)

    def runs_needed(self, limit: float, confidence: float) -> Optional[int]:
        return _runs_needed(self.y, math.log(limit) if self.logs and limit > 0 else limit, confidence)


def _evaluate_per_run(bound: SlaBound, lat: EngineLatency, x: Sequence[float], confidence: float,
                      alpha_fail: Optional[float], ref_val: Optional[float], ref_txt: str, label: str) -> SlaResult:
    """A percentile bound on step-clocked samples: the requests of one run share the engine's step
    clock, so each run gives one estimate (its percentile) and the CI is a Student-t interval over
    the runs, as for throughput. ``fail`` needs the bound surely missed at ``alpha_fail`` and by
    every run."""
    import numpy as np

    assert bound.q is not None
    conf = f"{confidence * 100:g}%"
    ests = [float(np.quantile(np.asarray(v), bound.q)) for v in _by_run(x, lat.run_labels(bound.metric))]
    n = len(ests)
    runs = _PerRun(ests)
    mean = runs.center
    why = (f"the {len(x)} samples take only {len({round(float(v), 6) for v in x})} distinct value(s): requests "
           "of one batch share the engine's step clock, so each run is one measurement")
    if n < 2:
        return SlaResult(bound, lat.name, lat.role, "inconclusive", mean, None, None, n, confidence, None, ref_val,
                         f"{bound.name}: {label} = {_fmt_s(mean)} in 1 run; bound {_fmt_s(bound.limit)}: "
                         f"inconclusive, {why}: a CI needs at least 2 runs (--parity-latency-runs=3){ref_txt}")
    lo, hi = runs.interval(confidence)
    head = (f"{bound.name}: {label} = {_fmt_s(mean)} ({runs.what} of {n} per-run {bound.stat} values, {conf} CI "
            f"{_fmt_s(lo)} to {_fmt_s(hi)}; {why}); bound {_fmt_s(bound.limit)}")
    if hi <= bound.limit:
        return SlaResult(bound, lat.name, lat.role, "pass", mean, lo, hi, n, confidence, None, ref_val,
                         f"{head}: met with {conf} confidence{ref_txt}")
    strict_lo = (runs.interval(1 - 2 * alpha_fail)[0] if alpha_fail is not None and alpha_fail < (1 - confidence) / 2
                 else lo)
    if strict_lo > bound.limit and all(e > bound.limit for e in ests):
        return SlaResult(bound, lat.name, lat.role, "fail", mean, lo, hi, n, confidence, None, ref_val,
                         f"{head}: surely missed (the whole CI is above the bound, and every run){ref_txt}")
    need = runs.runs_needed(bound.limit, confidence)
    tail = (f"need about {need} runs (--parity-latency-runs={need})" if need is not None
            else "the estimate sits at the bound: more runs are unlikely to settle it")
    return SlaResult(bound, lat.name, lat.role, "inconclusive", mean, lo, hi, n, confidence, need, ref_val,
                     f"{head}: inconclusive, the CI straddles the bound: {tail}{ref_txt}")


def _point(bound: SlaBound, lat: EngineLatency) -> Optional[float]:
    import numpy as np

    if bound.metric == "throughput":
        return lat.throughput
    x = lat.values(bound.metric)
    return float(np.quantile(np.asarray(x, dtype=float), bound.q)) if x else None


def _evaluate_throughput(bound: SlaBound, lat: EngineLatency, confidence: float, ref_val: Optional[float],
                         ref_txt: str, who: str) -> SlaResult:
    import numpy as np

    conf = f"{confidence * 100:g}%"
    per_run = [r.throughput for r in lat.runs if r.duration_s > 0]
    n = len(per_run)
    if n == 0:
        return SlaResult(bound, lat.name, lat.role, "inconclusive", None, None, None, 0, confidence, None, ref_val,
                         f"{bound.name}: {who}: no timed runs")
    mean = float(np.mean(per_run))
    if n < 2:
        return SlaResult(bound, lat.name, lat.role, "inconclusive", mean, None, None, 1, confidence, None, ref_val,
                         f"{bound.name}: {who} throughput = {_fmt_tok(mean)} in 1 run; bound {_fmt_tok(bound.limit)}:"
                         f" inconclusive, a confidence interval needs at least 2 runs (run-to-run spread): "
                         f"--parity-latency-runs=3{ref_txt}")
    runs = _PerRun(per_run)
    lo, hi = runs.interval(confidence)
    mean = runs.center
    head = (f"{bound.name}: {who} throughput = {_fmt_tok(mean)} ({runs.what} of {n} runs, "
            f"{conf} CI {_fmt_tok(lo)} to {_fmt_tok(hi)}); bound {_fmt_tok(bound.limit)}")
    if lo >= bound.limit:
        return SlaResult(bound, lat.name, lat.role, "pass", mean, lo, hi, n, confidence, None, ref_val,
                         f"{head}: met with {conf} confidence{ref_txt}")
    if hi < bound.limit:
        return SlaResult(bound, lat.name, lat.role, "fail", mean, lo, hi, n, confidence, None, ref_val,
                         f"{head}: surely missed (the whole CI is below the bound){ref_txt}")
    need = runs.runs_needed(bound.limit, confidence)
    tail = (f"need about {need} runs (--parity-latency-runs={need})" if need is not None
            else "the mean sits at the bound: more runs are unlikely to settle it")
    return SlaResult(bound, lat.name, lat.role, "inconclusive", mean, lo, hi, n, confidence, need, ref_val,
                     f"{head}: inconclusive, the CI straddles the bound: {tail}{ref_txt}")


# --------------------------------------------------------------------------------------------
# goodput


def goodput(lat: EngineLatency, bounds: Sequence[SlaBound]) -> Optional[dict[str, Any]]:
    """Goodput as ``vllm bench serve --goodput`` computes it, with the SLA's values as the
    per-request SLOs (``ttft_p99<=500ms`` -> each request's TTFT <= 500 ms; the tightest value when
    a metric has several bounds). TPOT of a one-token output counts as 0; failed requests are never
    good. ITL and throughput bounds are not per-request SLOs. None when no bound applies."""
    slo: dict[str, float] = {}
    for b in bounds:
        if b.metric in PER_REQUEST_SLO:
            slo[b.metric] = min(b.limit, slo.get(b.metric, math.inf))
    if not slo:
        return None
    good = 0
    for s in lat.samples:
        if not s.ok:
            continue
        vals = {"ttft": s.ttft, "tpot": s.tpot if s.tpot is not None else 0.0, "e2e": s.e2e}
        if all(vals[m] is not None and vals[m] <= lim for m, lim in slo.items()):  # type: ignore[operator]
            good += 1
    total = len(lat.samples)
    dur = lat.duration_s
    return {"slo_s": slo, "good_requests": good, "requests": total,
            "good_share": good / total if total else None,
            "goodput_req_s": good / dur if dur > 0 else None,
            "request_throughput_req_s": (total - lat.failed) / dur if dur > 0 else None}


# --------------------------------------------------------------------------------------------
# slowdown


@dataclass(frozen=True)
class SlowdownResult:
    """Candidate / reference for one metric and statistic."""

    metric: str
    stat: str
    verdict: Verdict
    max_ratio: float
    ratio: Optional[float]
    low: Optional[float]
    high: Optional[float]
    ref_value: Optional[float]
    cand_value: Optional[float]
    n_ref: int
    n_cand: int
    more_samples_needed: Optional[int]  # per engine
    message: str
    regression: Optional[dict] = None  # stats.RegressionVerdict.to_dict()

    @property
    def name(self) -> str:
        return f"slowdown:{self.metric}_{self.stat}"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"name": self.name, **{k: v for k, v in asdict(self).items()}})


def _by_run(x: Sequence[float], labels: Sequence[Any]) -> list[list[float]]:
    by: dict[Any, list[float]] = {}
    for v, r in zip(x, labels):
        by.setdefault(r, []).append(float(v))
    return list(by.values())


def slowdown_checks(ref: EngineLatency, cand: EngineLatency, max_ratio: float = 1.10,
                    metrics: Sequence[str] = SLOWDOWN_METRICS, stats: Sequence[str] = SLOWDOWN_STATS,
                    confidence: float = 0.95, seed: Optional[int] = 0, n_resamples: int = 2000,
                    alpha_fail: Optional[float] = None) -> list[SlowdownResult]:
    """``stats.regression_verdict`` per metric and statistic, with messages that name both engines.

    With two or more timed runs per engine the bootstrap resamples whole runs (run-to-run
    variation is not taken for a difference); when the samples of one batch share the engine's
    step clock (few distinct values), each run is one measurement and the CI is a t-interval over
    the runs (``stats.run_level_regression``); with one run, ``inconclusive``; ``fail`` is decided
    at ``alpha_fail`` (the run's family-wise share) when given."""
    import numpy as np

    from .stats import is_step_clocked, regression_verdict, run_level_regression, step_clock_guard

    out = []
    per_run = ref.runs[0].requests if ref.runs else 0
    for metric in metrics:
        r, c = ref.values(metric), cand.values(metric)
        for stat in stats:
            head = f"slowdown:{metric}_{stat}: candidate {cand.name} vs reference {ref.name}"
            if not r or not c:
                out.append(SlowdownResult(metric, stat, "inconclusive", max_ratio, None, None, None, None, None,
                                          len(r), len(c), None,
                                          f"{head}: no samples ({len(r)} reference, {len(c)} candidate)"))
                continue
            q = 0.5 if stat == "median" else (None if stat == "mean" else float(stat[1:]) / 100.0)
            ref_stat = float(np.mean(r)) if q is None else float(np.quantile(np.asarray(r, dtype=float), q))
            if ref_stat <= 0:
                out.append(SlowdownResult(metric, stat, "inconclusive", max_ratio, None, None, None, ref_stat, None,
                                          len(r), len(c), None,
                                          f"{head}: the reference {metric} {stat} is 0 (tokens arriving together): "
                                          f"no ratio can be formed"))
                continue
            v: RegressionVerdict = regression_verdict(r, c, stat=stat, max_ratio=max_ratio, confidence=confidence,
                                                      seed=seed, n_resamples=n_resamples, alpha_fail=alpha_fail,
                                                      ref_groups=ref.run_labels(metric), cand_groups=cand.run_labels(metric))
            if v.ci is not None and (is_step_clocked(r) or is_step_clocked(c)):
                # one batch per run on a step clock: each run is one measurement, the runs are the
                # samples (a run-level t-interval; with one run per engine, no verdict)
                rr, cr = _by_run(r, ref.run_labels(metric)), _by_run(c, cand.run_labels(metric))
                if len(rr) >= 2 and len(cr) >= 2:
                    v = run_level_regression(rr, cr, stat, max_ratio, confidence, alpha_fail)
                else:
                    for side, x in (("reference", r), ("candidate", c)):
                        v = step_clock_guard(v, x, side, metric)
            ci = v.ci
            msg = f"{head}: {v.message}"
            if v.verdict == "inconclusive" and ci is None:
                msg += f"; need {v.more_samples_needed} more samples per engine"
            if v.verdict == "inconclusive" and v.more_samples_needed and per_run and metric != "itl":
                runs_now = max(len(ref.runs), 1)
                extra_runs = math.ceil(v.more_samples_needed / per_run)
                msg += f" (≈ --parity-latency-runs={runs_now + extra_runs} with {per_run} requests per run)"
            out.append(SlowdownResult(
                metric, stat, v.verdict, max_ratio, ci.ratio if ci else None, ci.low if ci else None,
                ci.high if ci else None, ci.ref_value if ci else ref_stat, ci.cand_value if ci else None,
                v.n_ref, v.n_cand, v.more_samples_needed, msg, _jsonable(v.to_dict())))
    return out


# --------------------------------------------------------------------------------------------
# measuring on live engines


def load_shape(info: Optional[EngineInfo], n_requests: int, transport: str = "in-process") -> dict[str, Any]:
    """How the timed requests reach this engine (from ``EngineInfo`` and the adapter's transport)."""
    if info is None:
        return {"mode": "unknown", "description": "engine not started"}
    d = info.details or {}
    if transport == "http" or "concurrency" in d:
        conc, rate = d.get("concurrency"), d.get("request_rate")
        arrival = f"Poisson arrivals at {rate:g} req/s (seed {d.get('arrival_seed')})" if rate else "all sent at once"
        return {"mode": "http-stream", "requests": n_requests, "concurrency": conc, "request_rate": rate,
                "arrival": d.get("arrival") or ("poisson" if rate else "all-at-once"),
                "description": f"{n_requests} requests per run streamed over HTTP, at most {conc} in flight, {arrival}"}
    return {"mode": "one-batch", "requests": n_requests, "max_batch_size": info.limits.max_batch_size,
            "description": f"one batch of {n_requests} requests per run (in-process engine)"}


def _memory(view: Any, gpu_peak: Optional[int]) -> dict[str, Any]:
    rss = view.peak_rss_bytes
    d: dict[str, Any] = {
        "gpu_bytes": gpu_peak,
        "gpu_source": "NVML, worker process tree, largest of the samples taken after each latency call"
        if gpu_peak is not None else "no GPU memory seen (no GPU, no NVML, or the process is not visible)",
        "rss_peak_bytes": rss,
        "rss_source": "worker process VmHWM",
        "bytes": gpu_peak if gpu_peak is not None else rss,
        "kind": "gpu" if gpu_peak is not None else "rss",
    }
    if view.capabilities.transport == "http":
        d["note"] = "HTTP engine: the worker is the client; the server's memory is not visible from here"
    return d


def measure(ctx: "CheckContext", requests: Optional[Sequence[GenerationRequest]] = None,
            runs: Optional[int] = None, warmup: Optional[int] = None) -> LatencyMeasurement:
    """Time ``requests`` (default: the session's declared requests) on both engines: warm-up
    requests first (excluded), then ``runs`` timed runs, reference then candidate in each run,
    each run one call per engine."""
    cfg = ctx.cfg
    reqs = list(requests if requests is not None else ctx.suite_requests())
    if not reqs:
        raise ValueError("no requests to time: the suite declared none (parametrize a test with "
                         "parity_request / @pytest.mark.parity_prompts, or use --parity-prompts)")
    n_runs = cfg.latency_runs if runs is None else int(runs)
    n_warm = cfg.warmup if warmup is None else int(warmup)
    handles = (ctx.reference, ctx.candidate)
    for h in handles:
        h.ensure_started()
    warm = [reqs[i % len(reqs)] for i in range(n_warm)]
    gpu_peak: dict[str, Optional[int]] = {h.role: None for h in handles}

    def sample_gpu(h: Any) -> None:
        v = gpu_memory_bytes(h.worker_pid)
        if v is not None and (gpu_peak[h.role] is None or v > (gpu_peak[h.role] or 0)):
            gpu_peak[h.role] = v

    if warm:
        for h in handles:
            h.generate(warm, label="latency warm-up")
            sample_gpu(h)
    timed: dict[str, list[tuple[list[Completion], float]]] = {h.role: [] for h in handles}
    for i in range(n_runs):
        for h in handles:
            t0 = time.perf_counter()
            outs = h.generate(reqs, label=f"latency run {i + 1}/{n_runs}")
            timed[h.role].append((outs, time.perf_counter() - t0))
            sample_gpu(h)
    lats = [EngineLatency.from_runs(h.role, h.name, timed[h.role], kind=h.spec.kind, warmup=len(warm),
                                    load=load_shape(h.info, len(reqs), h.capabilities.transport), memory=_memory(h, gpu_peak[h.role]))
            for h in handles]
    note = ("the suite's declared requests, re-sent for timing after the warm-up (not the parity batch, "
            "whose cold start would skew them); samples of all runs pooled")
    return LatencyMeasurement(lats[0], lats[1], requests=len(reqs), runs=n_runs, warmup=len(warm), note=note)


class _Stored:
    measurement: Optional["LatencyMeasurement"] = None


def store_measurement(ctx: "CheckContext", m: LatencyMeasurement) -> None:
    """Make ``m`` the session's latency samples (also for recorded samples, e.g. a replay) and
    write its summary into the report section ``latency``."""
    ctx.state("latency", _Stored).measurement = m
    ctx.set_section("latency", m.summary(ctx.cfg.sla_bounds))


def stored_measurement(ctx: "CheckContext") -> Optional[LatencyMeasurement]:
    return ctx.state("latency", _Stored).measurement


def option_given(pytestconfig: Any, dest: str) -> bool:
    """Whether a ``--parity-*`` option was set explicitly: on the command line, as an ini key or in
    ``[tool.engineparity]`` (so a default can mean "not asked for")."""
    from ..config import OPTIONS, read_pyproject_table

    opt = next((o for o in OPTIONS if o.dest == dest), None)
    if opt is None:
        raise ValueError(f"unknown option {dest!r}")
    if pytestconfig.getoption("engineparity_" + dest, None) is not None:
        return True
    if pytestconfig.getini(opt.ini) not in (None, ""):
        return True
    return opt.toml in read_pyproject_table(pytestconfig.rootpath)


# --------------------------------------------------------------------------------------------
# the EnginePair mixin


def _failure_text(head: str, results: Sequence[Any], others_label: str) -> str:
    """The failed results under ``head``, then every other result with its verdict."""
    lines = [head] + [f"  - {r.message}" for r in results if r.verdict == "fail"]
    rest = [r for r in results if r.verdict != "fail"]
    if rest:
        lines.append(others_label)
        lines += [f"  - [{r.verdict}] {r.message}" for r in rest]
    return "\n".join(lines)


class LatencyChecks:
    """The latency check family (``engine_pair.latency``): ``latency_samples()``, ``assert_latency_sla()``, ``assert_no_slowdown()``.

    Works through its ``CheckContext`` only.
    """


    name = "latency"

    section = "latency"  # the report section this family owns (JSON key; HTML by ``render_html``)

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    @staticmethod
    def render_html(doc: Any) -> str:
        return html_section(doc)

    @property
    def sla_bounds(self) -> list[SlaBound]:
        """The bounds given with ``--parity-sla`` (empty when none)."""
        return list(self._ctx.cfg.sla_bounds)

    def latency_requests(self) -> list[GenerationRequest]:
        """The requests that would be timed: every request the suite declared."""
        return self._ctx.suite_requests()

    def latency_samples(self) -> LatencyMeasurement:
        """Both engines' latency samples, measured once per session (warm-up, then
        ``--parity-latency-runs`` runs of the declared requests) and cached."""
        m = stored_measurement(self._ctx)
        if m is None:
            m = measure(self._ctx)
            store_measurement(self._ctx, m)
        return m

    def _section(self) -> dict[str, Any]:
        sec = self._ctx.section("latency")
        if sec is None:
            self.latency_samples()
            sec = self._ctx.section("latency")
        return sec

    def assert_latency_sla(self, bounds: Union[str, Sequence[SlaBound], None] = None,
                           engine: str = "candidate") -> list[SlaResult]:
        """One check per bound (``sla:ttft_p99<=500ms``) on the candidate (or ``engine=``);
        raises ParityMismatch listing every bound that is surely missed. Inconclusive bounds are
        recorded as such, with the samples needed, and do not fail."""
        from ..errors import ParityMismatch

        if isinstance(bounds, str):
            bounds = parse_sla(bounds)
        bl = list(self._ctx.cfg.sla_bounds if bounds is None else bounds)
        if not bl:
            raise ValueError("no SLA bounds: pass --parity-sla=... or bounds='ttft_p99<=500ms,...'")
        m = self.latency_samples()
        lat = m.engine(engine)
        other = m.reference if engine == "candidate" else None
        conf = self._ctx.cfg.confidence
        share = self._ctx.cfg.alpha_per_decision
        results = [evaluate_sla(b, lat, conf, other, alpha_fail=share) for b in bl]
        sec = self._section()
        done = {d["name"] for d in sec["sla"]}
        for i, res in enumerate(results):
            # one gate for the SLA (its bounds in one call): the alpha share is counted once
            numbers = {**res.to_dict(), **({"alpha_fail": share} if i == 0 else {})}
            self._ctx.record(res.name, res.verdict, res.message, numbers)
            if res.name in done:
                sec["sla"] = [d for d in sec["sla"] if d["name"] != res.name]
            sec["sla"].append(numbers)
        failed = [r for r in results if r.verdict == "fail"]
        if failed:
            raise ParityMismatch(_failure_text(
                f"latency SLA missed by {lat.role} {lat.name!r}: {len(failed)} of {len(results)} bound(s) "
                f"surely missed ({conf * 100:g}% CI wholly beyond the bound)", results, "other bounds:"))
        return results

    def assert_no_slowdown(self, max_ratio: Optional[float] = None, metrics: Sequence[str] = SLOWDOWN_METRICS,
                           stats: Sequence[str] = SLOWDOWN_STATS) -> list[SlowdownResult]:
        """One check per metric and statistic (``slowdown:ttft_p50``): candidate / reference with a
        bootstrap CI. Raises ParityMismatch when a CI lies wholly above ``max_ratio`` (default
        ``--parity-max-slowdown``); an inconclusive one is recorded as ``inconclusive`` with the
        samples it needs and does not fail."""
        from ..errors import ParityMismatch

        cfg = self._ctx.cfg
        ratio = cfg.max_slowdown if max_ratio is None else float(max_ratio)
        m = self.latency_samples()
        # the statistics of one call are one gate: its alpha share is split over them (Bonferroni)
        n_dec = max(1, len(metrics) * len(stats))  # every statistic can fail: the share is split over them
        results = slowdown_checks(m.reference, m.candidate, ratio, metrics, stats, cfg.confidence, cfg.seed,
                                  alpha_fail=cfg.alpha_per_decision / n_dec)
        sec = self._section()
        names = {r.name for r in results}
        sec["regression"] = [d for d in sec["regression"] if d["name"] not in names]
        for i, res in enumerate(results):
            numbers = {**res.to_dict(), **({"alpha_fail": cfg.alpha_per_decision} if i == 0 else {})}
            self._ctx.record(res.name, res.verdict, res.message, numbers)
            sec["regression"].append(numbers)
        sec["max_slowdown"] = ratio
        failed = [r for r in results if r.verdict == "fail"]
        if failed:
            raise ParityMismatch(_failure_text(
                f"candidate {m.candidate.name!r} is slower than reference {m.reference.name!r} beyond "
                f"{ratio:.2f}x on {len(failed)} of {len(results)} statistic(s):", results, "other statistics:"))
        return results


# --------------------------------------------------------------------------------------------
# HTML

_COLORS = {"reference": "#1f6fb4", "candidate": "#d2492a"}


def _svg_cdf(metric: str, engines: dict[str, Any], bounds: Sequence[dict]) -> str:
    """Inline SVG: empirical CDF of one metric on both engines, SLA bounds as dashed lines."""
    series = {role: e["metrics"][metric].get("cdf") or [] for role, e in engines.items()
              if e.get("metrics", {}).get(metric, {}).get("n")}
    if not series:
        return ""
    xs = [p[0] for pts in series.values() for p in pts] + [b["limit"] for b in bounds]
    lo_x, hi_x = min(xs), max(xs)
    pos = [x for x in xs if x > 0]
    log = bool(pos) and min(pos) > 0 and max(pos) / min(pos) > 50
    if log:
        lo_x = min(pos) / 1.2
        hi_x = hi_x * 1.2
    else:
        lo_x, hi_x = 0.0, (hi_x * 1.05 if hi_x > 0 else 1.0)
    W, H, L, R, T, B = 560, 240, 56, 12, 12, 40
    pw, ph = W - L - R, H - T - B

    def sx(x: float) -> float:
        if log:
            x = max(x, lo_x)
            return L + pw * (math.log10(x) - math.log10(lo_x)) / (math.log10(hi_x) - math.log10(lo_x))
        return L + pw * (x - lo_x) / ((hi_x - lo_x) or 1.0)

    def sy(q: float) -> float:
        return T + ph * (1.0 - q)

    e = html.escape
    parts = [f'<svg class="latency-cdf" data-metric="{e(metric)}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="{e(metric)} CDF, reference and candidate">',
             f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for q in (0.5, 0.9, 0.99):
        parts.append(f'<line x1="{L}" x2="{L + pw}" y1="{sy(q):.1f}" y2="{sy(q):.1f}" stroke="#ddd"/>'
                     f'<text x="{L - 4}" y="{sy(q) + 4:.1f}" font-size="10" text-anchor="end">p{q * 100:g}</text>')
    if log:
        ticks = [10.0 ** k for k in range(math.floor(math.log10(lo_x)), math.ceil(math.log10(hi_x)) + 1)
                 if lo_x <= 10.0 ** k <= hi_x]
    else:
        ticks = [lo_x + (hi_x - lo_x) * i / 4 for i in range(5)]
    for t in ticks:
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{T + ph}" y2="{T + ph + 4}" stroke="#666"/>'
                     f'<text x="{sx(t):.1f}" y="{T + ph + 15}" font-size="10" text-anchor="middle">{e(_fmt_s(t))}</text>')
    parts.append(f'<text x="{L + pw / 2:.0f}" y="{H - 6}" font-size="11" text-anchor="middle">'
                 f'{e(metric.upper())}{" (log scale)" if log else ""}</text>')
    for role, pts in series.items():
        path: list[str] = []
        prev_q = 0.0
        for x, q in pts:
            path.append(f"{sx(x):.1f},{sy(prev_q):.1f}")
            path.append(f"{sx(x):.1f},{sy(q):.1f}")
            prev_q = q
        name = engines[role].get("name", role)
        parts.append(f'<polyline class="cdf-{e(role)}" fill="none" stroke="{_COLORS.get(role, "#333")}" '
                     f'stroke-width="1.6" points="{" ".join(path)}"><title>{e(role)}: {e(str(name))}</title></polyline>')
    for b in bounds:
        bx = sx(b["limit"])
        q = b.get("q") or 0.5
        parts.append(f'<line class="sla-bound" x1="{bx:.1f}" x2="{bx:.1f}" y1="{T}" y2="{T + ph}" stroke="#222" '
                     f'stroke-dasharray="5,3"><title>{e(b["text"])}</title></line>'
                     f'<circle cx="{bx:.1f}" cy="{sy(q):.1f}" r="3" fill="#222"/>'
                     f'<text x="{bx + 3:.1f}" y="{T + 11}" font-size="10">{e(b["text"])}</text>')
    ly = T + ph - 30
    for i, role in enumerate(series):
        parts.append(f'<line x1="{L + pw - 150}" x2="{L + pw - 130}" y1="{ly + i * 13}" y2="{ly + i * 13}" '
                     f'stroke="{_COLORS.get(role, "#333")}" stroke-width="2"/>'
                     f'<text x="{L + pw - 126}" y="{ly + i * 13 + 4}" font-size="10">'
                     f'{e(role)}: {e(str(engines[role].get("name", role)))[:22]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _mib(b: Optional[int]) -> str:
    return "n/a" if b is None else f"{b / 2**20:.0f} MiB"


def html_section(doc: dict[str, Any]) -> str:
    """The report's latency part: per-engine table, SLA and slowdown verdicts, goodput, and a CDF
    of each metric for both engines with the SLA bounds drawn (inline SVG, no network)."""
    sec = doc.get("latency")
    if not sec:
        return ""
    e = html.escape
    engines = sec.get("engines", {})
    out = ["<h2>Latency</h2>",
           f"<p>{e(str(sec.get('requests_per_run')))} requests per run × {e(str(sec.get('runs')))} run(s) per engine, "
           f"after {e(str(sec.get('warmup_requests')))} warm-up request(s) (excluded). {e(sec.get('note', ''))}</p>"]
    rows = []
    for role in ("reference", "candidate"):
        en = engines.get(role)
        if not en:
            continue
        ms = en.get("metrics", {})

        def cell(m: str, k: str) -> str:
            return e(_fmt_s(ms.get(m, {}).get(k)))

        mem = en.get("peak_memory", {})
        rows.append(
            f"<tr><td>{e(role)}</td><td>{e(str(en.get('name')))}</td><td>{e(str(en.get('load', {}).get('description', '')))}</td>"
            f"<td>{e(str(en.get('timing_source')))}</td><td>{en.get('requests')} ({en.get('failed_requests')} failed)</td>"
            + "".join(f"<td>{cell(m, 'p50')} / {cell(m, 'p90')} / {cell(m, 'p99')}</td>" for m in METRICS)
            + f"<td>{e(_fmt_tok(en.get('throughput_tok_s')))}</td>"
            f"<td>{e(_mib(mem.get('bytes')))} ({e(str(mem.get('kind')))})</td></tr>")
    out.append("<table><tr><th>role</th><th>engine</th><th>load</th><th>clock</th><th>requests</th>"
               + "".join(f"<th>{m.upper()} p50 / p90 / p99</th>" for m in METRICS)
               + "<th>throughput</th><th>peak memory</th></tr>" + "".join(rows) + "</table>")
    checks = list(sec.get("sla") or []) + list(sec.get("regression") or [])
    if checks:
        out.append("<table><tr><th>check</th><th>verdict</th><th>detail</th></tr>" + "".join(
            f"<tr><td>{e(c['name'])}</td><td>{e(c['verdict'])}</td><td>{e(c.get('message', ''))}</td></tr>"
            for c in checks) + "</table>")
    gp = sec.get("goodput")
    if gp:
        items = []
        for role, g in gp.items():
            if g:
                share, rate = g.get("good_share"), g.get("goodput_req_s")
                share_t = "n/a" if share is None else f"{share * 100:.1f}%"
                rate_t = "n/a" if rate is None else f"{rate:.2f}"
                items.append(f"<li>{e(role)}: {g['good_requests']}/{g['requests']} requests good"
                             f" ({share_t}), goodput {rate_t} req/s</li>")
        slo = next((g["slo_s"] for g in gp.values() if g), {})
        out.append(f"<p>Goodput (per-request SLOs {e(', '.join(f'{k}<={_fmt_s(v)}' for k, v in slo.items()))}, "
                   f"as vllm bench serve --goodput):</p><ul>{''.join(items)}</ul>")
    bounds = sec.get("bounds") or []
    extra = [c["bound"] for c in sec.get("sla") or [] if c.get("bound")]
    all_bounds = {b["text"]: b for b in list(bounds) + extra}
    for m in METRICS:
        svg = _svg_cdf(m, engines, [b for b in all_bounds.values() if b["metric"] == m])
        if svg:
            out.append(f"<h3>{e(m.upper())} CDF</h3>{svg}")
    return "\n".join(out)
