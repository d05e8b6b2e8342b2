"""Latency parity under the same load: a seeded sweep of load levels sent to both engines' servers,
per-level latency, throughput and goodput, a slowdown verdict per level, and capacity at SLO.

The plan (``--parity-load``, parsed once in ``config.parse_load_plan`` into a ``LoadPlan``):

* ``concurrency=1,8,32``: closed loop; at each level at most that many requests are in flight, the
  next one is sent as soon as one finishes;
* ``rate=2,4,8/s``: open loop; Poisson arrivals at that many requests per second, no cap on
  requests in flight;
* ``;requests=N`` requests per level and run (default 32, a bootstrap of p50 needs 30 per engine;
  or 4 x the highest concurrency level when that is more),
  ``;output=N`` every request asks for exactly N tokens (``ignore_eos``, ``min_tokens = max_tokens``),
  ``;input=N`` synthetic prompts of N tokens, ``;runs=N`` timed runs per level (default 1; with two
  or more, whole runs are resampled and run-to-run variation is not taken for a difference),
  ``;good=SHARE`` the goodput share a level needs to count towards capacity (default 0.9),
  ``;stats=p50,p90`` the percentiles judged per level (default p50).

The same schedule for both engines: which request goes at which position and, for rate levels, when
it is sent, are drawn once per level from ``--parity-seed``; both engines get exactly that list.
The workload is the suite's declared requests when there are any (sampled in that seeded order,
repeated to fill a level), else synthetic prompts of ``input`` tokens (64 by default) cut at seeded
offsets from one built-in English text tokenized by the reference engine, each asking for exactly
``output`` tokens (32 by default), like ``vllm bench serve``'s random dataset. Load requests ask for
no logprobs (production traffic does not). ``--parity-warmup`` requests go to each engine before
the sweep and are excluded. Levels run from the lowest up; in each run, reference then candidate.

Only servers can be loaded: the schedule is sent by a client of the engine's server in the pytest
process (``engines.registry.load_client``: the ``openai`` adapter's request path, retries off, so a
429/503 under load counts as a failed request). An in-process engine takes one batch at a time;
for it the sweep is skipped with that reason, never faked.

Per request (the definitions of ``vllm bench serve``, client clock on the stream):

* **TTFT**: send to the first streamed token;
* **ITL**: the gap between two successive streamed chunks that carry tokens (a chunk with several
  tokens is one gap, as vllm bench serve counts it);
* **TPOT**: ``(e2e - TTFT) / (output tokens - 1)``; none for one-token outputs;
* **e2e**: send to the end of the stream.

Per level and engine: p50 / p90 / p99 of each with a distribution-free 95 % CI
(``stats.percentile_ci``), output throughput (tokens / wall time of the run, pytest side), request
throughput, and goodput (requests meeting every per-request SLO of ``--parity-sla`` per second, as
``vllm bench serve --goodput``). Before any throughput number is used, every request is checked
to have produced the output length it asked for (with ``output=N``: exactly N tokens); when some did
not (a server that ignores ``ignore_eos`` / ``min_tokens``), that level's throughput and goodput are
reported as not usable and say why.

Verdicts:

* ``load:slowdown@<level>`` (one per level): TTFT, TPOT and e2e at p50 (``;stats=p50,p90`` adds
  tails; a tail needs more requests per level to settle), candidate / reference with a bootstrap
  CI (``latency.slowdown_checks``) against ``--parity-max-slowdown``;
  ``fail`` only when a CI lies wholly above it (at the family-wise alpha share, split over every
  statistic of the sweep), ``pass`` when all lie below, else ``inconclusive`` saying what would
  settle it (more requests per level, more runs).
* ``load:capacity`` (needs ``--parity-sla``): each engine's capacity is the highest level up to
  which every level meets the SLA's bounds (percentile point estimates within their limits, and a
  goodput share of at least ``good``); the candidate/reference capacity ratio passes when
  ``candidate * max_slowdown >= reference``; it fails only when the candidate *surely* misses the SLA
  (a bound's CI wholly beyond it, or the goodput share's CI wholly below ``good``) at a level where
  the reference meets it; otherwise ``inconclusive`` with what would settle it.
"""

from __future__ import annotations

import html
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..types import Completion, GenerationRequest
from .latency import (PER_REQUEST_SLO, EngineLatency, RequestSample, RunStats, SlaBound, _fmt_s, _fmt_tok,
                      _jsonable, evaluate_sla, goodput, slowdown_checks)

if TYPE_CHECKING:  # pragma: no cover
    from ..config import LoadPlan
    from .context import CheckContext

__all__ = ["DEFAULT_REQUESTS", "LOAD_METRICS", "LOAD_SLOWDOWN_METRICS", "LOAD_STATS", "schedule", "workload",
           "sample_from_completion", "length_check", "requests_per_level", "LevelEngine", "LevelMeasurement", "LoadMeasurement",
           "LevelVerdict", "CapacityResult", "level_slowdown", "level_status", "capacity", "measure_load",
           "html_section", "terminal_lines", "LoadChecks"]

DEFAULT_REQUESTS = 32  # per level and run: a bootstrap of p50 needs 30 per engine (stats.default_min_samples)
DEFAULT_INPUT = 64  # synthetic prompt tokens
DEFAULT_OUTPUT = 32  # output tokens of a synthetic request
LOAD_METRICS = ("ttft", "tpot", "itl", "e2e")
LOAD_SLOWDOWN_METRICS = ("ttft", "tpot", "e2e")
LOAD_STATS = ("p50",)  # the default of LoadPlan.stats
PERCENTILES = (50, 90, 99)
IN_PROCESS_REASON = ("in-process engines cannot be loaded concurrently (they take one batch at a time): "
                     "{names}; use a server kind for load levels (vllm-serve, trtllm-serve, or openai:URL)")

# The synthetic workload's source text (plain prose, written for this project): prompts are windows
# of its tokens at seeded offsets, so every engine gets valid token ids of its own tokenizer.
SYNTHETIC_TEXT = (
    "The harbour town woke slowly. Fishing boats came back before dawn, and the market filled with "
    "crates of mackerel, crabs and salt cod. Children ran between the stalls while their parents argued "
    "about prices, the weather and the new road that was supposed to reach the valley by autumn. "
    "Up on the hill the old lighthouse keeper wrote in his logbook, as he had every morning for forty "
    "years: wind from the west, light rain, three ships passed, one of them flying a flag he did not "
    "recognise. The library opened at nine. Its single room held maps of the coast, a shelf of almanacs "
    "and a box of letters nobody had claimed. A student from the city was reading about tides, copying "
    "tables of numbers into a notebook and checking them against the sea outside the window. In the "
    "bakery the second batch of bread was cooling, and the smell drifted down to the quay where a ferry "
    "was loading bicycles, sacks of flour and a piano wrapped in blankets. By noon the clouds had "
    "cleared. The schoolteacher took her class to the rocks to count limpets and to measure how far the "
    "water had fallen since morning. Somebody had left a radio playing on a bench, and the news spoke of "
    "elections, a storm further north and the price of diesel. In the evening the wind turned, the "
    "boats went out again, and the lighthouse began its slow count of the dark."
)


# --------------------------------------------------------------------------------------------
# the schedule and the workload (plain functions: unit-tested without engines)


def schedule(requests: Sequence[GenerationRequest], n: int, mode: str, level: float,
             seed: int) -> tuple[list[GenerationRequest], list[float], int]:
    """``(requests in send order, arrival offsets in seconds, concurrency)`` for one level.

    The order is a seeded shuffle of ``requests``, repeated (reshuffled each pass) to ``n``;
    ``concurrency`` levels send everything at offset 0 with at most ``level`` in flight; ``rate``
    levels draw Poisson arrival offsets (exponential gaps at ``level`` per second, the first at 0)
    with no cap. The same arguments give the same schedule, for every engine."""
    if not requests:
        raise ValueError("a load level needs at least one request")
    if n < 1:
        raise ValueError(f"requests per level must be >= 1, got {n}")
    rng = random.Random(f"engineparity-load:{seed}:{mode}:{level!r}")
    order: list[GenerationRequest] = []
    while len(order) < n:
        batch = list(requests)
        rng.shuffle(batch)
        order.extend(batch[: n - len(order)])
    if mode == "concurrency":
        return order, [0.0] * n, int(level)
    if mode != "rate":
        raise ValueError(f"unknown load mode {mode!r}")
    offsets, t = [], 0.0
    for i in range(n):
        if i:
            t += rng.expovariate(float(level))
        offsets.append(t)
    return order, offsets, n


def requests_per_level(plan: "LoadPlan") -> int:
    """``requests=`` of the plan, else 32 (p50 needs 30 per engine), or 4 x the highest
    concurrency level when that is more (a few waves, not one)."""
    if plan.requests:
        return int(plan.requests)
    if plan.mode == "concurrency":
        return max(DEFAULT_REQUESTS, 4 * int(max(plan.levels)))
    return DEFAULT_REQUESTS


def shaped(req: GenerationRequest, output: Optional[int]) -> GenerationRequest:
    """A request as the load sends it: no logprobs; with ``output`` exactly that many tokens."""
    changes: dict[str, Any] = {"logprobs": None}
    if output is not None:
        changes.update(max_tokens=int(output), min_tokens=int(output), ignore_eos=True)
    return req.replace(**changes)


def synthetic_requests(token_ids: Sequence[int], count: int, input_tokens: int, output: int,
                       seed: int) -> list[GenerationRequest]:
    """``count`` token-id prompts of ``input_tokens`` each, windows of ``token_ids`` (repeated as
    needed) at seeded offsets, each asking for exactly ``output`` tokens."""
    ids = list(token_ids)
    if not ids:
        raise ValueError("synthetic prompts need a non-empty token sequence")
    while len(ids) < 2 * input_tokens:
        ids = ids + ids
    rng = random.Random(f"engineparity-load-prompts:{seed}")
    out = []
    for i in range(count):
        start = rng.randrange(0, len(ids) - input_tokens + 1)
        out.append(GenerationRequest(prompt_token_ids=tuple(ids[start:start + input_tokens]), max_tokens=output,
                                     min_tokens=output, ignore_eos=True, logprobs=None, id=f"load-synthetic-{i}"))
    return out


def workload(declared: Sequence[GenerationRequest], plan: "LoadPlan", tokenize: Any,
             seed: int) -> tuple[list[GenerationRequest], dict[str, Any]]:
    """``(requests, description)``: the declared requests shaped for load, or synthetic prompts
    (``plan.input`` given, or nothing declared). ``tokenize(text) -> ids`` is asked only for
    synthetic prompts; when it fails, text prompts of about ``input`` words are used instead."""
    if declared and plan.input is None:
        reqs = [shaped(r, plan.output) for r in declared]
        return reqs, {"source": "declared", "prompts": len(reqs), "output_tokens": plan.output,
                      "fixed_output": plan.output is not None,
                      "description": f"the suite's {len(reqs)} declared request(s)"
                      + (f", each asking for exactly {plan.output} tokens" if plan.output else
                         " with their own max_tokens (outputs may stop early at EOS)")}
    n_in = plan.input or DEFAULT_INPUT
    n_out = plan.output or DEFAULT_OUTPUT
    count = max(8, min(64, plan.requests or DEFAULT_REQUESTS))
    note = ""
    try:
        ids = list(tokenize(SYNTHETIC_TEXT))
    except Exception as exc:  # an engine that cannot tokenize: words instead of tokens
        ids = []
        note = f"; no tokenizer ({exc}): text prompts of {n_in} words instead of {n_in} tokens"
    if ids:
        reqs = synthetic_requests(ids, count, n_in, n_out, seed)
    else:
        words = SYNTHETIC_TEXT.split()
        rng = random.Random(f"engineparity-load-prompts:{seed}")
        while len(words) < 2 * n_in:
            words = words + words
        reqs = []
        for i in range(count):
            s = rng.randrange(0, len(words) - n_in + 1)
            reqs.append(GenerationRequest(prompt=" ".join(words[s:s + n_in]), max_tokens=n_out, min_tokens=n_out,
                                          ignore_eos=True, logprobs=None, id=f"load-synthetic-{i}"))
    return reqs, {"source": "synthetic", "prompts": len(reqs), "input_tokens": n_in, "output_tokens": n_out,
                  "fixed_output": True,
                  "description": f"{len(reqs)} synthetic prompts of {n_in} tokens (windows of a built-in text, "
                                 f"seeded), each asking for exactly {n_out} tokens (ignore_eos){note}"}


def sample_from_completion(c: Completion, run: int = 0) -> RequestSample:
    """One request's numbers as ``vllm bench serve`` defines them (see the module docstring)."""
    t = c.timings
    if not c.ok:
        return RequestSample(ok=False, run=run, source=t.source, error=c.error)
    times = [float(x) for x in (t.token_times or [])]
    n_out = c.output_token_count or len(times)
    ttft = t.ttft if t.ttft is not None else (times[0] if times else None)
    e2e = t.e2e if t.e2e is not None else (times[-1] if times else None)
    chunks = [b - a for a, b in zip(times, times[1:]) if b > a]  # tokens of one chunk share its time
    tpot = (e2e - ttft) / (n_out - 1) if (n_out > 1 and e2e is not None and ttft is not None) else None
    return RequestSample(ok=True, ttft=None if ttft is None else float(ttft), tpot=None if tpot is None else float(tpot),
                         e2e=None if e2e is None else float(e2e), itl=chunks, output_tokens=int(n_out), run=run,
                         source=t.source)


def length_check(requests: Sequence[GenerationRequest], outs: Sequence[Completion]) -> dict[str, Any]:
    """Did every request produce the length it asked for? A request with ``ignore_eos`` and
    ``min_tokens == max_tokens`` asked for exactly that many; others only for at most
    ``max_tokens``. ``usable`` is False when a fixed-length request came back shorter or longer
    (its throughput would count work that was not done)."""
    fixed = [r.ignore_eos and r.min_tokens == r.max_tokens for r in requests]
    wrong, produced = [], []
    for i, (r, c, f) in enumerate(zip(requests, outs, fixed)):
        if not c.ok:
            continue
        n = c.output_token_count or len(c.timings.token_times or ())
        produced.append(n)
        if f and n != r.max_tokens:
            wrong.append({"index": i, "asked": r.max_tokens, "produced": n})
    n_fixed = sum(fixed)
    if wrong:
        why = (f"{len(wrong)} of {n_fixed} fixed-length request(s) produced another length than asked "
               f"(e.g. {wrong[0]['produced']} of {wrong[0]['asked']} tokens): ignore_eos / min_tokens not honoured; "
               "throughput and goodput of this level are not used")
    elif n_fixed == len(requests):
        why = f"every request produced exactly the {requests[0].max_tokens if requests else 0} tokens it asked for"
    else:
        why = (f"{len(requests) - n_fixed} request(s) without a fixed length (they may stop at EOS): throughput "
               "counts the tokens each engine chose to produce; set output=N in --parity-load to fix it")
    return {"usable": not wrong, "fixed_requests": n_fixed, "requests": len(requests), "wrong": wrong[:10],
            "wrong_count": len(wrong), "produced_min": min(produced) if produced else None,
            "produced_max": max(produced) if produced else None, "note": why}


# --------------------------------------------------------------------------------------------
# measurements


@dataclass
class LevelEngine:
    """One engine at one level: its samples and runs (an ``EngineLatency``) and the length check."""

    latency: EngineLatency
    lengths: dict = field(default_factory=dict)

    @property
    def throughput_usable(self) -> bool:
        return bool(self.lengths.get("usable", True))

    def summary(self, bounds: Sequence[SlaBound], confidence: float) -> dict[str, Any]:
        import numpy as np

        from .stats import percentile_ci

        lat = self.latency
        metrics: dict[str, Any] = {}
        for m in LOAD_METRICS:
            x = lat.values(m)
            d: dict[str, Any] = {"n": len(x)}
            if x:
                arr = np.asarray(x, dtype=float)
                d["mean"] = float(arr.mean())
                for p in PERCENTILES:
                    ci = percentile_ci(arr, p / 100.0, confidence)
                    d[f"p{p}"] = ci.estimate
                    d[f"p{p}_ci"] = [ci.low, ci.high]
            metrics[m] = d
        gp = goodput(lat, bounds)
        usable = self.throughput_usable
        dur = lat.duration_s
        return _jsonable({
            "name": lat.name, "requests": len(lat.samples), "failed_requests": lat.failed,
            "output_tokens": lat.output_tokens, "duration_s": dur, "runs": [r.to_dict() for r in lat.runs],
            "timing_source": ", ".join(lat.timing_sources) or None, "metrics": metrics,
            "throughput_tok_s": lat.throughput if usable else None,
            "request_throughput_req_s": ((len(lat.samples) - lat.failed) / dur if dur > 0 else None) if usable else None,
            "goodput": (gp if usable else {**gp, "goodput_req_s": None, "note": "not used: " + self.lengths["note"]})
            if gp else None,
            "lengths": self.lengths,
        })


@dataclass
class LevelMeasurement:
    """Both engines at one load level."""

    level: float
    label: str
    concurrency: int
    requests: int  # per run
    offsets_span_s: float  # when the last request of the schedule is due (0 for concurrency levels)
    reference: LevelEngine
    candidate: LevelEngine

    def engine(self, role: str) -> LevelEngine:
        return self.reference if role == "reference" else self.candidate


@dataclass
class LoadMeasurement:
    """A whole sweep (or why none ran)."""

    plan: Any  # config.LoadPlan
    levels: list = field(default_factory=list)  # list[LevelMeasurement]
    workload: dict = field(default_factory=dict)
    warmup: int = 0
    names: dict = field(default_factory=dict)  # role -> engine name
    skipped: Optional[str] = None
    note: str = ""


def _engine_latency(role: str, name: str, runs: Sequence[tuple[Sequence[Completion], float]]) -> EngineLatency:
    lat = EngineLatency(role, name)
    for i, (outs, wall) in enumerate(runs, 1):
        rs = [sample_from_completion(c, i) for c in outs]
        lat.samples.extend(rs)
        spans = [s.e2e for s in rs if s.ok and s.e2e is not None]
        lat.runs.append(RunStats(i, len(rs), sum(not s.ok for s in rs), sum(s.output_tokens for s in rs if s.ok),
                                 float(wall), max(spans) if spans else None))
    return lat


def level_from_runs(plan: Any, level: float, reqs: Sequence[GenerationRequest], offsets: Sequence[float],
                    concurrency: int, runs: dict[str, list[tuple[list[Completion], float]]],
                    names: dict[str, str]) -> LevelMeasurement:
    """A ``LevelMeasurement`` from recorded runs (``role -> [(completions, wall seconds), ...]``)."""
    sides = {}
    for role in ("reference", "candidate"):
        lat = _engine_latency(role, names[role], runs[role])
        lat.load = {"mode": plan.mode, "level": level, "concurrency": concurrency}
        checks = [length_check(reqs, outs) for outs, _ in runs[role]]
        bad = [c for c in checks if not c["usable"]]
        sides[role] = LevelEngine(lat, bad[0] if bad else (checks[0] if checks else {"usable": True}))
    return LevelMeasurement(level, plan.label(level), concurrency, len(reqs), float(max(offsets) if offsets else 0.0),
                            sides["reference"], sides["candidate"])


def measure_load(ctx: "CheckContext", plan: "LoadPlan",
                 requests: Optional[Sequence[GenerationRequest]] = None) -> LoadMeasurement:
    """Run the sweep on both engines (see the module docstring); a ``LoadMeasurement`` whose
    ``skipped`` says why when it cannot run (in-process engines, one engine)."""
    from ..engines.registry import load_client

    cfg = ctx.cfg
    views = (ctx.reference, ctx.candidate)
    names = {v.role: v.name for v in views}
    m = LoadMeasurement(plan, names=names)
    if getattr(ctx, "single_engine", False):
        m.skipped = "a load comparison needs two engines (--engine-pair=REF,CAND)"
        return m
    in_process = [v.name for v in views if v.capabilities.transport != "http"]
    if in_process:
        m.skipped = IN_PROCESS_REASON.format(names=", ".join(in_process))
        return m
    clients: dict[str, Any] = {}
    try:
        for v in views:
            c = load_client(v.spec, v.info)
            if c is None:
                m.skipped = IN_PROCESS_REASON.format(names=v.name)
                return m
            clients[v.role] = c
        declared = list(requests) if requests is not None else list(ctx.suite_requests())
        reqs, m.workload = workload(declared, plan, ctx.reference.tokenize, cfg.seed)
        n = requests_per_level(plan)
        warm = [reqs[i % len(reqs)] for i in range(cfg.warmup)]
        m.warmup = len(warm)
        for v in views:
            if warm:
                clients[v.role].generate_scheduled(warm, [0.0] * len(warm), 1)
        for li, level in enumerate(plan.levels):
            order, offsets, conc = schedule(reqs, n, plan.mode, level, cfg.seed + li)
            runs: dict[str, list] = {"reference": [], "candidate": []}
            for _ in range(plan.runs):
                for v in views:
                    t0 = time.perf_counter()
                    outs = clients[v.role].generate_scheduled(order, offsets, conc)
                    runs[v.role].append((outs, time.perf_counter() - t0))
            m.levels.append(level_from_runs(plan, level, order, offsets, conc, runs, names))
    finally:
        for c in clients.values():
            try:
                c.close()
            except Exception:  # closing a client must not hide the sweep's outcome
                pass
    m.note = (f"{n} requests per level and run, {plan.runs} run(s) per level and engine, the same seeded schedule "
              f"for both; {m.warmup} warm-up request(s) per engine first (excluded); sent by a client of each "
              "server in the pytest process (retries off)")
    return m


# --------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True)
class LevelVerdict:
    """``load:slowdown@<level>``: the worst of its statistics, and each of them."""

    label: str
    verdict: str
    message: str
    results: tuple = ()  # latency.SlowdownResult

    @property
    def name(self) -> str:
        return f"load:slowdown@{self.label}"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"name": self.name, "level": self.label, "verdict": self.verdict, "message": self.message,
                          "statistics": [r.to_dict() for r in self.results]})


def level_slowdown(lm: LevelMeasurement, max_ratio: float, confidence: float = 0.95, seed: Optional[int] = 0,
                   alpha_fail: Optional[float] = None, metrics: Sequence[str] = LOAD_SLOWDOWN_METRICS,
                   stats: Sequence[str] = LOAD_STATS) -> LevelVerdict:
    ref, cand = lm.reference.latency, lm.candidate.latency
    res = slowdown_checks(ref, cand, max_ratio, metrics, stats, confidence, seed, alpha_fail=alpha_fail)
    fails = [r for r in res if r.verdict == "fail"]
    opens = [r for r in res if r.verdict == "inconclusive"]
    head = f"load:slowdown@{lm.label}: candidate {cand.name} vs reference {ref.name}, max {max_ratio:.2f}x"
    if lm.reference.latency.failed or lm.candidate.latency.failed:
        head += f" ({ref.failed} reference, {cand.failed} candidate request(s) failed)"
    if fails:
        verdict = "fail"
        body = "slower on " + "; ".join(f"{r.metric} {r.stat} {r.ratio:.2f}x (CI {r.low:.2f}-{r.high:.2f})"
                                        for r in fails if r.ratio is not None)
    elif opens:
        verdict = "inconclusive"
        needs = [r.more_samples_needed for r in opens if r.more_samples_needed]
        settle = (f"need about {max(needs)} more requests per engine at this level (requests={lm.requests + max(needs)} "
                  "in --parity-load, or runs=N)" if needs else "more requests per level or runs=N may settle it")
        body = (f"{len(opens)} of {len(res)} statistics undecided ("
                + ", ".join(f"{r.metric} {r.stat}" + (f" {r.ratio:.2f}x" if r.ratio is not None else "") for r in opens)
                + f"): {settle}")
    else:
        verdict = "pass"
        body = "no slowdown: " + ", ".join(f"{r.metric} {r.stat} {r.ratio:.2f}x" for r in res if r.ratio is not None)
    if verdict != "pass" and lm.reference.latency.runs and len(lm.reference.latency.runs) == 1:
        body += "; one run per level: run-to-run variation is not separated (runs=3 resamples whole runs)"
    return LevelVerdict(lm.label, verdict, f"{head}: {body}", tuple(res))


def level_status(le: LevelEngine, bounds: Sequence[SlaBound], good: float, confidence: float = 0.95) -> dict[str, Any]:
    """Does one engine meet the SLA at one level? ``meets`` by point estimates (every percentile
    within its limit, throughput at least its bound, goodput share >= ``good``); ``surely_misses``
    when a bound's CI lies wholly beyond it or the goodput share's CI wholly below ``good``."""
    from .stats import proportion_interval

    lat = le.latency
    reasons, sure = [], []
    meets = True
    for b in bounds:
        if b.metric == "throughput":
            if not le.throughput_usable:
                meets = False
                reasons.append(f"{b.text}: throughput not usable ({le.lengths.get('note')})")
                continue
            thr = lat.throughput
            if thr is None or thr < b.limit:
                meets = False
                reasons.append(f"{b.text}: {_fmt_tok(thr)}")
            continue
        r = evaluate_sla(b, lat, confidence)
        if r.measured is None:
            meets = False
            reasons.append(f"{b.text}: no samples")
            continue
        if r.measured > b.limit:
            meets = False
            reasons.append(f"{b.text}: {b.metric} {b.stat} = {_fmt_s(r.measured)}")
        if r.verdict == "fail":
            sure.append(f"{b.text} surely missed ({b.metric} {b.stat} CI {_fmt_s(r.low)} to {_fmt_s(r.high)})")
    gp = goodput(lat, bounds)
    share = None
    if gp and gp.get("requests"):
        share = gp["good_share"]
        lo, hi = proportion_interval(gp["good_requests"], gp["requests"], confidence)
        if share < good:
            meets = False
            reasons.append(f"goodput share {share:.0%} < {good:.0%}")
        if hi < good:
            sure.append(f"goodput share {share:.0%} (CI {lo:.0%}-{hi:.0%}) surely below {good:.0%}")
    return {"meets": meets, "surely_misses": bool(sure), "good_share": share,
            "why": "; ".join(sure or reasons) or "meets every bound"}


@dataclass(frozen=True)
class CapacityResult:
    verdict: str
    message: str
    reference: Optional[float]  # highest level met (None: not even the lowest)
    candidate: Optional[float]
    ratio: Optional[float]  # candidate / reference capacity
    censored: dict  # role -> True when the highest level was met (the capacity is at least that)
    levels: dict  # role -> [level_status, ...]
    max_ratio: float

    name = "load:capacity"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"name": self.name, "verdict": self.verdict, "message": self.message,
                          "capacity": {"reference": self.reference, "candidate": self.candidate},
                          "ratio": self.ratio, "censored": self.censored, "levels": self.levels,
                          "max_slowdown": self.max_ratio})


def capacity(m: LoadMeasurement, bounds: Sequence[SlaBound], max_ratio: float,
             confidence: float = 0.95) -> CapacityResult:
    """Capacity at SLO of each engine and the candidate/reference verdict (module docstring)."""
    plan = m.plan
    levels = list(m.levels)
    unit = plan.unit
    fmt = (lambda x: "none" if x is None else plan.label(x))  # noqa: E731
    usable = [b for b in bounds if b.metric in PER_REQUEST_SLO or b.metric in ("itl", "throughput")]
    if not usable:
        return CapacityResult("skip", "load:capacity: capacity at SLO needs SLA bounds: give --parity-sla, e.g. "
                              '"ttft_p90<=500ms,e2e_p90<=5s"', None, None, None, {}, {}, max_ratio)
    status = {role: [level_status(lm.engine(role), usable, plan.good, confidence) for lm in levels]
              for role in ("reference", "candidate")}
    caps: dict[str, Optional[float]] = {}
    first_miss: dict[str, Optional[int]] = {}
    for role, sts in status.items():
        cap, miss = None, None
        for i, st in enumerate(sts):
            if st["meets"]:
                cap = levels[i].level
            else:
                miss = i
                break
        caps[role], first_miss[role] = cap, miss
    censored = {role: first_miss[role] is None for role in caps}
    ref_cap, cand_cap = caps["reference"], caps["candidate"]
    ratio = cand_cap / ref_cap if (ref_cap and cand_cap is not None) else None
    names = m.names
    head = (f"load:capacity: capacity at SLO ({', '.join(b.text for b in usable)}, goodput share >= {plan.good:.0%}): "
            f"reference {names.get('reference')} {'>= ' if censored['reference'] and ref_cap else ''}{fmt(ref_cap)}, "
            f"candidate {names.get('candidate')} {'>= ' if censored['candidate'] and cand_cap else ''}{fmt(cand_cap)}")
    if ratio is not None:
        head += f", ratio {ratio:.2f}"
    if ref_cap is None:
        i = first_miss["reference"] or 0
        return CapacityResult("inconclusive", f"{head}: the reference meets the SLA at no level ({levels[i].label}: "
                              f"{status['reference'][i]['why']}); lower the lowest level or loosen --parity-sla",
                              ref_cap, cand_cap, ratio, censored, status, max_ratio)
    if cand_cap is not None and cand_cap * max_ratio >= ref_cap:
        tail = ""
        if censored["reference"] and censored["candidate"]:
            tail = f"; both meet the SLA at every level: add higher levels to find where each saturates ({unit})"
        return CapacityResult("pass", f"{head}: the candidate holds at least 1/{max_ratio:.2f} of the reference's "
                              f"capacity{tail}", ref_cap, cand_cap, ratio, censored, status, max_ratio)
    i = first_miss["candidate"]
    assert i is not None
    cst, rst = status["candidate"][i], status["reference"][i]
    lbl = levels[i].label
    if cst["surely_misses"] and rst["meets"] and not rst["surely_misses"]:
        return CapacityResult("fail", f"{head}: at {lbl} the candidate surely misses the SLA ({cst['why']}) where the "
                              f"reference meets it ({rst['why']}): capacity ratio below 1/{max_ratio:.2f}",
                              ref_cap, cand_cap, ratio, censored, status, max_ratio)
    return CapacityResult("inconclusive", f"{head}: at {lbl} the candidate misses the SLA by point estimates only "
                          f"({cst['why']}); more requests per level (requests=N) or runs=N in --parity-load would "
                          "settle whether the miss is real", ref_cap, cand_cap, ratio, censored, status, max_ratio)


# --------------------------------------------------------------------------------------------
# the report section


def summary(m: LoadMeasurement, bounds: Sequence[SlaBound], confidence: float) -> dict[str, Any]:
    if m.skipped:
        return _jsonable({"plan": m.plan.to_dict(), "skipped": m.skipped, "levels": [], "capacity": None,
                          "slowdown": []})
    return _jsonable({
        "plan": m.plan.to_dict(), "skipped": None, "workload": m.workload, "warmup_requests": m.warmup,
        "note": m.note, "names": m.names, "bounds": [b.to_dict() for b in bounds],
        "definitions": {"ttft": "send to the first streamed token", "itl": "gap between successive streamed chunks "
                        "carrying tokens (vllm bench serve)", "tpot": "(e2e - ttft) / (output tokens - 1)",
                        "e2e": "send to the end of the stream", "clock": "client, on the stream (pytest process)"},
        "levels": [{"level": lm.level, "label": lm.label, "concurrency": lm.concurrency, "requests_per_run": lm.requests,
                    "schedule_span_s": lm.offsets_span_s,
                    "engines": {role: lm.engine(role).summary(bounds, confidence) for role in ("reference", "candidate")}}
                   for lm in m.levels],
        "slowdown": [], "capacity": None,
    })


def terminal_lines(doc: dict[str, Any]) -> list[str]:
    """One line per level (both engines' p50 / p90 TTFT and e2e, throughput, slowdown verdict) and
    the capacity line, from the report document."""
    sec = doc.get("load")
    if not sec:
        return []
    if sec.get("skipped"):
        return [f"load sweep skipped: {sec['skipped']}"]
    verdicts = {d["level"]: d["verdict"] for d in sec.get("slowdown") or []}
    out = [f"load sweep ({sec['plan']['text']}): {sec.get('workload', {}).get('description', '')}"]
    for lv in sec.get("levels") or []:
        parts = []
        for role in ("reference", "candidate"):
            e = lv["engines"][role]
            ms = e["metrics"]
            parts.append(f"{role[:3]} ttft {_fmt_s(ms['ttft'].get('p50'))}/{_fmt_s(ms['ttft'].get('p90'))} "
                         f"e2e {_fmt_s(ms['e2e'].get('p50'))}/{_fmt_s(ms['e2e'].get('p90'))} "
                         f"{_fmt_tok(e.get('throughput_tok_s'))}")
        out.append(f"  {lv['label']:<16} " + " | ".join(parts) + f" | slowdown {verdicts.get(lv['label'], '-')}")
    cap = sec.get("capacity")
    if cap:
        out.append(f"  capacity: {cap['verdict']}: {cap['message']}")
    return out


_COLORS = {"reference": "#1f6fb4", "candidate": "#d2492a"}


def _svg_curves(kind: str, title: str, labels: Sequence[str], series: dict[str, list], fmt: Any,
                bounds: Sequence[dict] = ()) -> str:
    """Inline SVG: one polyline per (role, style) over the load levels (evenly spaced, in order).
    ``series``: ``"role|style" -> [y or None per level]``; style ``solid`` or ``dashed``; each
    SLA bound (``{"limit", "text"}``) is a dashed horizontal line."""
    ys = [y for pts in series.values() for y in pts if y is not None]
    if not ys or not labels:
        return ""
    ys += [b["limit"] for b in bounds]
    W, H, L, R, T, B = 560, 240, 64, 12, 12, 40
    pw, ph = W - L - R, H - T - B
    hi = max(ys) * 1.1 or 1.0
    k = len(labels)

    def sx(i: int) -> float:
        return L + (pw * (i + 0.5) / k)

    def sy(y: float) -> float:
        return T + ph * (1.0 - y / hi)

    e = html.escape
    parts = [f'<svg class="load-curve" data-kind="{e(kind)}" xmlns="http://www.w3.org/2000/svg" width="{W}" '
             f'height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{e(title)}">',
             f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for j in range(5):
        y = hi * j / 4
        parts.append(f'<line x1="{L}" x2="{L + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>'
                     f'<text x="{L - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{e(fmt(y))}</text>')
    for i, lab in enumerate(labels):
        parts.append(f'<text x="{sx(i):.1f}" y="{T + ph + 15}" font-size="10" text-anchor="middle">{e(lab)}</text>')
    parts.append(f'<text x="{L + pw / 2:.0f}" y="{H - 6}" font-size="11" text-anchor="middle">{e(title)}</text>')
    for key, pts in series.items():
        role, _, style = key.partition("|")
        color = _COLORS.get(role, "#333")
        dash = ' stroke-dasharray="5,3"' if style == "dashed" else ""
        xy = [(sx(i), sy(y)) for i, y in enumerate(pts) if y is not None]
        if not xy:
            continue
        parts.append(f'<polyline class="curve-{e(role)}" fill="none" stroke="{color}" stroke-width="1.6"{dash} '
                     f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"><title>{e(key)}</title></polyline>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in xy]
    for b in bounds:
        by = sy(b["limit"])
        parts.append(f'<line class="sla-bound" x1="{L}" x2="{L + pw}" y1="{by:.1f}" y2="{by:.1f}" stroke="#222" '
                     f'stroke-dasharray="5,3"><title>{e(b["text"])}</title></line>'
                     f'<text x="{L + pw - 4}" y="{by - 3:.1f}" font-size="10" text-anchor="end">{e(b["text"])}</text>')
    ly = T + 12
    for i, role in enumerate(("reference", "candidate")):
        parts.append(f'<line x1="{L + 8}" x2="{L + 28}" y1="{ly + i * 13}" y2="{ly + i * 13}" stroke="{_COLORS[role]}" '
                     f'stroke-width="2"/><text x="{L + 32}" y="{ly + i * 13 + 4}" font-size="10">{e(role)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_section(doc: dict[str, Any]) -> str:
    """The report's load part: plan and workload, a per-level table, the verdicts, and the
    latency-vs-load (p50 solid, p90 dashed) and throughput-vs-load curves of both engines."""
    sec = doc.get("load")
    if not sec:
        return ""
    e = html.escape
    out = ["<h2>Latency under load</h2>"]
    if sec.get("skipped"):
        out.append(f"<p>Load sweep ({e(sec['plan']['text'])}) skipped: {e(sec['skipped'])}</p>")
        return "\n".join(out)
    out.append(f"<p>Plan <code>{e(sec['plan']['text'])}</code>: {e(sec.get('workload', {}).get('description', ''))}. "
               f"{e(sec.get('note', ''))}.</p>")
    levels = sec.get("levels") or []
    rows = []
    for lv in levels:
        for role in ("reference", "candidate"):
            en = lv["engines"][role]
            ms = en["metrics"]

            def cell(m: str) -> str:
                d = ms.get(m, {})
                return e(f"{_fmt_s(d.get('p50'))} / {_fmt_s(d.get('p90'))} / {_fmt_s(d.get('p99'))}")

            g = en.get("goodput") or {}
            share = g.get("good_share")
            rows.append(f"<tr><td>{e(lv['label'])}</td><td>{e(role)}: {e(str(en.get('name')))}</td>"
                        f"<td>{en.get('requests')} ({en.get('failed_requests')} failed)</td>"
                        + "".join(f"<td>{cell(m)}</td>" for m in LOAD_METRICS)
                        + f"<td>{e(_fmt_tok(en.get('throughput_tok_s')))}</td>"
                        f"<td>{'n/a' if share is None else f'{share:.0%}'}</td>"
                        f"<td>{e(str((en.get('lengths') or {}).get('note', '')))}</td></tr>")
    out.append("<table><tr><th>level</th><th>engine</th><th>requests</th>"
               + "".join(f"<th>{m.upper()} p50 / p90 / p99</th>" for m in LOAD_METRICS)
               + "<th>throughput</th><th>good share</th><th>output lengths</th></tr>" + "".join(rows) + "</table>")
    checks = list(sec.get("slowdown") or []) + ([sec["capacity"]] if sec.get("capacity") else [])
    if checks:
        out.append("<table><tr><th>check</th><th>verdict</th><th>detail</th></tr>" + "".join(
            f"<tr><td>{e(c['name'])}</td><td>{e(c['verdict'])}</td><td>{e(c.get('message', ''))}</td></tr>"
            for c in checks) + "</table>")
    labels = [lv["label"] for lv in levels]
    for m in ("ttft", "tpot", "e2e"):
        series = {f"{role}|{style}": [lv["engines"][role]["metrics"][m].get(p) for lv in levels]
                  for role in ("reference", "candidate") for p, style in (("p50", "solid"), ("p90", "dashed"))}
        marks = [b for b in sec.get("bounds") or [] if b.get("metric") == m]
        svg = _svg_curves(f"latency-{m}", f"{m.upper()} vs load (p50 solid, p90 dashed)", labels, series, _fmt_s, marks)
        if svg:
            out.append(f"<h3>{e(m.upper())} vs load</h3>{svg}")
    series = {f"{role}|solid": [lv["engines"][role].get("throughput_tok_s") for lv in levels]
              for role in ("reference", "candidate")}
    svg = _svg_curves("throughput", "output throughput vs load (tok/s)", labels, series, lambda y: f"{y:.0f}")
    if svg:
        out.append(f"<h3>Throughput vs load</h3>{svg}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# the family


class _Stored:
    measurement: Optional[LoadMeasurement] = None


class LoadChecks:
    """The load family (``engine_pair.load``): ``load_plan``, ``load_sweep()``, ``assert_load_parity()``.

    Works through its ``CheckContext`` only.
    """

    name = "load"
    section = "load"

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    @staticmethod
    def render_html(doc: Any) -> str:
        return html_section(doc)

    @staticmethod
    def terminal_lines(doc: Any) -> list[str]:
        return terminal_lines(doc)

    @property
    def load_plan(self) -> Any:
        """The ``--parity-load`` plan (a ``config.LoadPlan``), or None when none was given."""
        return self._ctx.cfg.load

    def load_sweep(self, requests: Optional[Sequence[GenerationRequest]] = None, plan: Any = None) -> LoadMeasurement:
        """Both engines under every load level of the plan, measured once per session and cached."""
        stored = self._ctx.state("load", _Stored)
        if stored.measurement is None:
            p = plan if plan is not None else self.load_plan
            if p is None:
                raise ValueError('no load plan: pass --parity-load="concurrency=1,8,32" (or rate=2,4,8/s)')
            stored.measurement = measure_load(self._ctx, p, requests)
            cfg = self._ctx.cfg
            self._ctx.set_section("load", summary(stored.measurement, cfg.sla_bounds, cfg.confidence))
        return stored.measurement

    def assert_load_parity(self, requests: Optional[Sequence[GenerationRequest]] = None,
                           max_ratio: Optional[float] = None) -> list[Any]:
        """``load:slowdown@<level>`` per level and ``load:capacity``; raises ParityMismatch listing
        what failed. A sweep that cannot run (in-process engines) records ``load:sweep`` as ``skip``
        and returns it alone; inconclusive checks are recorded as such and do not fail."""
        from ..errors import ParityMismatch

        cfg = self._ctx.cfg
        ratio = cfg.max_slowdown if max_ratio is None else float(max_ratio)
        m = self.load_sweep(requests)
        sec = self._ctx.section("load")
        if m.skipped:
            skipped = _Named("load:sweep", "skip", f"load:sweep: {m.skipped}")
            self._ctx.record(skipped.name, skipped.verdict, skipped.message, {"reason": m.skipped})
            return [skipped]
        stats = tuple(getattr(m.plan, "stats", LOAD_STATS))
        n_dec = max(1, len(m.levels) * len(LOAD_SLOWDOWN_METRICS) * len(stats))
        results: list[Any] = []
        sec["slowdown"] = []
        for i, lm in enumerate(m.levels):
            v = level_slowdown(lm, ratio, cfg.confidence, cfg.seed, alpha_fail=cfg.alpha_per_decision / n_dec,
                               stats=stats)
            numbers = {**v.to_dict(), **({"alpha_fail": cfg.alpha_per_decision} if i == 0 else {})}
            self._ctx.record(v.name, v.verdict, v.message, numbers)
            sec["slowdown"].append(numbers)
            results.append(v)
        cap = capacity(m, cfg.sla_bounds, ratio, cfg.confidence)
        self._ctx.record(cap.name, cap.verdict, cap.message, cap.to_dict())
        sec["capacity"] = cap.to_dict()
        sec["max_slowdown"] = ratio
        results.append(cap)
        failed = [r for r in results if r.verdict == "fail"]
        if failed:
            lines = [f"candidate {m.names.get('candidate')!r} under load: {len(failed)} of {len(results)} check(s) "
                     "failed:"] + [f"  - {r.message}" for r in failed]
            rest = [r for r in results if r.verdict != "fail"]
            if rest:
                lines.append("other checks:")
                lines += [f"  - [{r.verdict}] {r.message}" for r in rest]
            lines += ["", *terminal_lines({"load": sec})]
            raise ParityMismatch("\n".join(lines))
        return results


@dataclass(frozen=True)
class _Named:
    name: str
    verdict: str
    message: str
