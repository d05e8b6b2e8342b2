"""The parity session: owns the two engines, the batched results, the comparisons and the checks.

Plain object, no pytest import: the plugin creates one per pytest session and hands it to the
fixtures. Engines start lazily, once. Every request the suite declared (parametrized requests,
prompt files) is sent to each engine as ONE batch the first time any result is needed; tests then
read cached results. A request built at run time falls back to a single call.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

from .checks.compare import EquivalencePolicy, PairComparison, compare_pair, render_divergence, self_consistency
from .config import EMBEDDED, ParityConfig
from .engines.base import EngineSpec
from .checks.verdicts import Check
from .errors import EngineUnavailable, ParityMismatch
from .types import Completion, EngineInfo, GenerationRequest
from .runtime.client import EngineError, EngineWorker

T = TypeVar("T")

__all__ = ["ParitySession", "PairResult", "ParityMismatch", "Check", "EngineHandle", "EngineView", "SessionContext"]


@dataclass
class PairResult:
    request: GenerationRequest
    reference: Completion
    candidate: Completion
    comparison: PairComparison
    ref_name: str
    cand_name: str

    @property
    def equivalent(self) -> bool:
        return self.comparison.equivalent

    @property
    def exact(self) -> bool:
        return self.comparison.exact

    def explain(self, color: bool = False) -> str:
        return "\n".join(render_divergence(self.request.label(), self.reference, self.candidate,
                                           self.comparison, self.ref_name, self.cand_name, color=color))

    def assert_equivalent(self) -> "PairResult":
        if not self.comparison.equivalent:
            raise ParityMismatch(self.explain())
        return self

    def assert_exact(self) -> "PairResult":
        if not self.comparison.exact:
            raise ParityMismatch("expected an exact token match\n" + self.explain())
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.request.label(), "key": self.request.key(), "request": self.request.to_dict(),
                "reference": self.reference.to_dict(), "candidate": self.candidate.to_dict(),
                "comparison": self.comparison.to_dict()}


class EngineHandle:
    """One side of the pair: starts its worker on first use, remembers its batch timings."""

    def __init__(self, role: str, spec: EngineSpec, log_dir: Optional[str], notify: Callable[[str], None]):
        self.role = role
        self.spec = spec
        self.name = spec.label
        self._log_dir = log_dir
        self._notify = notify
        self.worker: Optional[EngineWorker] = None
        self.error: Optional[EngineError] = None
        self.pids: list[int] = []  # every worker process this handle started (for orphan checks)
        self.starts = 0
        self.batches: list[dict[str, Any]] = []  # one entry per generate() call
        self.reported_at: Optional[str] = None  # where the first failure was shown in full
        self.current_place: Callable[[], str] = lambda: "above"

    @property
    def info(self) -> Optional[EngineInfo]:
        return self.worker.info if self.worker else None

    def ensure_started(self) -> EngineWorker:
        if self.error is not None:
            # already reported in full once: a fresh one-line error every later time (re-raising the
            # same exception object would grow its traceback with every test that needs the engine)
            raise EngineUnavailable(self.name, self.error, self.reported_at or "above")
        if self.worker is None:
            if self.spec.target == EMBEDDED:
                from .models import embedded_model_dir

                self.spec.target = str(embedded_model_dir())
            self._notify(f"starting {self.role} engine {self.name!r} ({self.spec.kind})")
            worker = EngineWorker(self.spec, log_dir=self._log_dir, name=self.name)
            self.starts += 1
            try:
                worker.start()
            except EngineError as exc:
                self._fail(exc)
                raise
            finally:
                if worker.last_pid is not None:
                    self.pids.append(worker.last_pid)
            self.worker = worker
            self._notify(f"{self.role} engine {self.name!r} up in {worker.start_seconds:.1f} s: "
                         f"{worker.info.version if worker.info else ''}")
        return self.worker

    def _fail(self, exc: EngineError) -> None:
        self.error = exc
        if self.reported_at is None:
            self.reported_at = self.current_place()

    def generate(self, requests: Sequence[GenerationRequest], label: str = "batch") -> list[Completion]:
        worker = self.ensure_started()
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, tokens: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= 2.0 or done == total:
                last[0] = now
                rate = tokens / max(now - t0, 1e-9)
                self._notify(f"{self.name}: {label} {done}/{total} requests, {tokens} tokens, {rate:.0f} tok/s")

        try:
            out = worker.generate(list(requests), progress)
        except EngineError as exc:
            self._fail(exc)
            raise
        wall = time.perf_counter() - t0
        self.batches.append({"label": label, "requests": len(requests), "wall_s": wall,
                             "output_tokens": sum(c.output_token_count or 0 for c in out)})
        return out

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    def describe(self) -> dict[str, Any]:
        w = self.worker
        return {
            "role": self.role, "name": self.name, "spec": self.spec.public_dict(),
            "info": w.info.to_dict() if w and w.info else None,
            "starts": self.starts, "start_seconds": w.start_seconds if w else None,
            "peak_rss_bytes": w.peak_rss_bytes if w else None,
            "peak_gpu_bytes": w.peak_gpu_bytes if w else None,
            "peak_gpu_source": w.peak_gpu_source if w else None,
            "batches": self.batches, "error": str(self.error) if self.error else None,
            "devices": self.spec.devices,
            "pids": self.pids,
        }


class ParitySession:
    def __init__(self, cfg: ParityConfig, log_dir: Optional[str] = None,
                 notify: Optional[Callable[[str], None]] = None):
        assert cfg.engine_pair is not None
        self.cfg = cfg
        self._notify = notify or (lambda msg: None)
        ref, cand = cfg.engine_pair
        self.candidate = EngineHandle("candidate", cand, log_dir, self._notify)
        # baseline-only mode: one engine, one worker, run as the candidate and seen on both sides
        self.reference = self.candidate if cfg.single_engine else EngineHandle("reference", ref, log_dir, self._notify)
        self.policy = EquivalencePolicy(similarity_threshold=cfg.similarity, top_k=cfg.top_k,
                                        tie_tolerance=cfg.tie_tolerance)
        self._requests: dict[str, GenerationRequest] = {}  # key -> request, in declaration order
        self._aux: set[str] = set()  # keys of auxiliary requests (see register)
        self._results: dict[str, dict[str, Completion]] = {"reference": {}, "candidate": {}}
        self._self_outputs: dict[str, dict[str, Completion]] = {"reference": {}, "candidate": {}}
        self.similarity: dict[str, Optional[float]] = {}
        self._checks: list[Check] = []
        self.noise_floor: dict[str, Any] = {}
        self.timings: dict[str, float] = {"similarity_s": 0.0}
        self._scorer: Any = None
        self.single_calls = 0
        self.schedule = "sequential"  # or "concurrent" (engines on disjoint GPUs)
        # extra report sections (JSON top-level keys) filled by the check modules:
        # "latency", "limits", "baseline", "quality"; each module renders its own HTML part
        self._sections: dict[str, Any] = {}
        self._state: dict[str, Any] = {}  # per-session state of check families (SessionContext.state)
        self._retok: Optional[tuple[Any, str]] = None  # (Retokenizer or None, note)

    # read-only views of what the session keeps (its dicts are its own; families go through
    # SessionContext, the report and the plugin read these)
    @property
    def declared(self) -> int:
        """How many requests the suite declared (auxiliary ones included)."""
        return len(self._requests)

    @property
    def checks(self) -> tuple[Check, ...]:
        """The checks recorded so far, in order."""
        return tuple(self._checks)

    @property
    def sections(self) -> Mapping[str, Any]:
        """The report sections the check families filled (JSON top-level keys)."""
        return MappingProxyType(self._sections)

    def state(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._state:
            self._state[key] = factory()
        return self._state[key]

    # -- requests ----------------------------------------------------------------------------
    def register(self, requests: Iterable[GenerationRequest], aux: bool = False) -> None:
        """Declare requests. ``aux=True`` marks requests a check family sends for its own purpose
        (task items, edge cases): they ride in the same batch, but are not suite prompts — not in
        the suite's equivalence rate, the noise floor or the report's prompt list."""
        for r in requests:
            k = r.key()
            if k not in self._requests:
                self._requests[k] = r
                if aux:
                    self._aux.add(k)
            elif not aux:
                self._aux.discard(k)  # declared as a suite prompt too: it counts as one

    def suite_keys(self) -> list[str]:
        return [k for k in self._requests if k not in self._aux]

    def _pending(self) -> list[GenerationRequest]:
        return [r for k, r in self._requests.items() if k not in self._results["candidate"]]

    @property
    def handles(self) -> list[EngineHandle]:
        """The distinct engines: two, or one in baseline-only mode."""
        return [self.candidate] if self.reference is self.candidate else [self.reference, self.candidate]

    def run_pending(self) -> None:
        """Send every declared, not-yet-run request to each engine as one batch."""
        pending = self._pending()
        if not pending:
            return
        for handle in self.handles:
            handle.ensure_started()  # a dead engine fails here, before the other does any work
        for handle, outs in self._both(lambda h: h.generate(pending, label="suite batch")):
            for r, c in zip(pending, outs):
                self._results[handle.role][r.key()] = c
        if self.reference is self.candidate:  # one engine: the same completions on both sides
            for r in pending:
                self._results["reference"][r.key()] = self._results["candidate"][r.key()]
        suite = [r for r in pending if r.key() not in self._aux]
        if self.cfg.noise_floor and len(suite) >= 2:
            self._self_runs(suite)
        self._score(suite)

    def start_engines(self) -> list[EngineError]:
        """Pre-flight: start both engines (or reach their endpoints) before any test runs, at the
        same time when they sit on disjoint GPUs. Returns the failures (each also kept on its
        handle, so tests that need it get one short line pointing here)."""
        errors: list[EngineError] = []

        def start(h: EngineHandle) -> Optional[EngineError]:
            try:
                h.ensure_started()
                return None
            except EngineError as exc:
                return exc
            except Exception as exc:  # EngineUnavailable on a second call, spec errors: keep going
                return EngineError(h.name, f"{type(exc).__name__}: {exc}")

        for h, err in self._both(start):
            if err is not None:
                if h.error is None:
                    h.error = err
                errors.append(err)
        return errors

    def _both(self, work: Callable[[EngineHandle], Any]) -> list[tuple[EngineHandle, Any]]:
        """Run ``work`` on both engines: at the same time when they sit on disjoint GPUs
        (``devices`` in their config), else one after the other."""
        from .runtime.placement import schedule

        handles = self.handles
        self.schedule = schedule(self.reference.spec, self.candidate.spec) if len(handles) == 2 else "one engine"
        if self.schedule != "concurrent":
            return [(h, work(h)) for h in handles]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [(h, pool.submit(work, h)) for h in handles]
            return [(h, f.result()) for h, f in futures]

    def _self_runs(self, pending: list[GenerationRequest]) -> None:
        """Each engine against itself: shuffled order, split in two calls (a different batch)."""
        order = list(pending)
        random.Random(self.cfg.seed + 1).shuffle(order)
        half = max(1, len(order) // 2)

        def again(handle: EngineHandle) -> list[Completion]:
            outs: list[Completion] = []
            for part in (order[:half], order[half:]):
                if part:
                    outs.extend(handle.generate(part, label="noise-floor batch"))
            return outs

        # at the same time when the engines sit on disjoint GPUs, as the suite batch
        for handle, outs in self._both(again):
            for r, c in zip(order, outs):
                self._self_outputs[handle.role][r.key()] = c
        if self.reference is self.candidate:
            self._self_outputs["reference"].update(self._self_outputs["candidate"])
        self._update_noise_floor()

    def _update_noise_floor(self) -> None:
        for role in ("reference", "candidate"):
            keys = [k for k in self.suite_keys() if k in self._self_outputs[role]]
            if keys:
                sc = self_consistency([self._results[role][k] for k in keys], [self._self_outputs[role][k] for k in keys])
                self.noise_floor[role] = sc.to_dict()

    def _score(self, requests: list[GenerationRequest]) -> None:
        pairs, keys = [], []
        for r in requests:
            k = r.key()
            a, b = self._results["reference"][k], self._results["candidate"][k]
            if a.ok and b.ok and (list(a.token_ids) != list(b.token_ids) or a.text != b.text):
                pairs.append((a.text, b.text))
                keys.append(k)
            else:
                self.similarity[k] = 1.0 if (a.ok and b.ok and a.text == b.text) else None
        if pairs:
            for k, sim in zip(keys, self.similarities(pairs)):
                self.similarity[k] = sim

    def similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Cosine similarity of text pairs, one batched encode; identical texts need no model."""
        todo = [i for i, (a, b) in enumerate(pairs) if a != b]
        out = [1.0] * len(pairs)
        if todo:
            t0 = time.perf_counter()
            if self._scorer is None:
                from .checks.semantic import SemanticScorer

                self._scorer = SemanticScorer()
            for i, sim in zip(todo, self._scorer.similarities([pairs[i] for i in todo])):
                out[i] = float(sim)
            self.timings["similarity_s"] += time.perf_counter() - t0
        return out

    # -- results -----------------------------------------------------------------------------
    def result(self, request: GenerationRequest, policy: Optional[EquivalencePolicy] = None,
               run: bool = True) -> PairResult:
        """The pair's result for one request; ``run=False`` only reads what already ran."""
        k = request.key()
        if run:
            if k not in self._requests:
                self.single_calls += 1  # built at run time: one call, not part of the suite batch
                self.register([request])
            self.run_pending()
        ref, cand = self._results["reference"][k], self._results["candidate"][k]
        if k not in self.similarity and ref.ok and cand.ok and ref.text != cand.text:
            self._score([self._requests[k]])  # an auxiliary request compared as a pair: score it now
        comp = compare_pair(ref, cand, self.similarity.get(k), policy or self.policy,
                            ref_caps=self.capabilities("reference"), cand_caps=self.capabilities("candidate"),
                            retokenizer=self.retokenizer() if not (ref.token_ids and cand.token_ids) else None)
        return PairResult(request, ref, cand, comp, self.reference.name, self.candidate.name)

    def capabilities(self, role: str) -> Any:
        """The engine's declared capabilities, corrected by what it found at start."""
        from .engines.base import effective_capabilities
        from .engines.registry import capabilities_of

        h = self.reference if role == "reference" else self.candidate
        return effective_capabilities(capabilities_of(h.spec.kind, h.spec), h.info)

    def retokenizer(self) -> Any:
        """One tokenizer for text-only outputs (``compare.choose_retokenizer``), chosen once;
        its answers are cached. None when no engine can tokenize (noted in ``sections``)."""
        if self._retok is None:
            from .checks.compare import TokenSource, choose_retokenizer

            cache: dict[tuple[str, str], list[int]] = {}

            def via(h: EngineHandle) -> Callable[[str], list[int]]:
                def tokenize(text: str) -> list[int]:
                    if (h.role, text) not in cache:
                        cache[(h.role, text)] = h.ensure_started().tokenize(text)
                    return cache[(h.role, text)]
                return tokenize

            sources = [TokenSource(h.role, h.name, via(h), bool(self.capabilities(h.role).token_ids))
                       for h in (self.candidate, self.reference)]
            self._retok = choose_retokenizer(sources)
            self._sections.setdefault("comparison", {})["retokenizer"] = self._retok[1]
        return self._retok[0]

    def finished_results(self) -> list[PairResult]:
        """Results both engines produced, without running anything (for reports at the end)."""
        return [self.result(self._requests[k], run=False) for k in self.suite_keys()
                if k in self._results["reference"] and k in self._results["candidate"]]

    def all_results(self, policy: Optional[EquivalencePolicy] = None) -> list[PairResult]:
        """The suite prompts' results (auxiliary requests excluded)."""
        self.run_pending()
        return [self.result(self._requests[k], policy) for k in self.suite_keys()]

    def record(self, check: Check) -> None:
        self._checks.append(check)

    def close(self) -> None:
        for h in self.handles[::-1]:
            try:
                h.close()
            except Exception:  # closing must never mask the run's own outcome
                pass


class EngineView:
    """One engine as a check family or a test sees it: direct calls (no caching), its info,
    capabilities and limits. ``info`` starts the engine if needed."""

    def __init__(self, handle: EngineHandle):
        self._h = handle

    @property
    def role(self) -> str:
        return self._h.role

    @property
    def name(self) -> str:
        return self._h.name

    @property
    def spec(self) -> EngineSpec:
        return self._h.spec

    @property
    def capabilities(self) -> Any:
        """Declared by the adapter, corrected by what the engine reported at start (if started)."""
        from .engines.base import effective_capabilities
        from .engines.registry import capabilities_of

        return effective_capabilities(capabilities_of(self._h.spec.kind, self._h.spec), self._h.info)

    @property
    def info(self) -> EngineInfo:
        self._h.ensure_started()
        assert self._h.info is not None
        return self._h.info

    @property
    def started_info(self) -> Optional[EngineInfo]:
        """Info if the engine already started, without starting it."""
        return self._h.info

    @property
    def worker_pid(self) -> Optional[int]:
        w = self._h.worker
        return w.pid if w is not None else None

    @property
    def peak_rss_bytes(self) -> Optional[int]:
        w = self._h.worker
        return w.peak_rss_bytes if w is not None else None

    def ensure_started(self) -> None:
        self._h.ensure_started()

    def generate(self, requests: Sequence[GenerationRequest], label: str = "direct call") -> list[Completion]:
        return self._h.generate(list(requests), label=label)

    def tokenize(self, text: str) -> list[int]:
        return self._h.ensure_started().tokenize(text)

    def probe(self, what: str, **kw: Any) -> Any:
        """Ask the adapter inside its worker for a fact (``what``: e.g. ``package_versions``)."""
        return self._h.ensure_started().probe(what, **kw)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec.public_dict(),
                "info": self._h.info.to_dict() if self._h.info else None}


class SessionContext:
    """The ``checks.context.CheckContext`` of one test: the session seen through a narrow window,
    with this test's equivalence policy, check recorder and JUnit properties."""

    def __init__(self, session: "ParitySession", record: Callable[..., Any], policy: Optional[EquivalencePolicy] = None,
                 properties: Optional[list] = None):
        self._s = session
        self._record = record
        self.policy = policy or session.policy
        self.properties = properties if properties is not None else []
        self.cfg = session.cfg
        self.reference = EngineView(session.reference)
        self.candidate = EngineView(session.candidate)

    def with_policy(self, policy: EquivalencePolicy) -> "SessionContext":
        return SessionContext(self._s, self._record, policy, self.properties)

    @property
    def single_engine(self) -> bool:
        return bool(self.cfg.single_engine) or self._s.reference is self._s.candidate

    def engine(self, role: str) -> EngineView:
        if role not in ("reference", "candidate"):
            raise ValueError(f"role must be 'reference' or 'candidate', got {role!r}")
        return self.reference if role == "reference" else self.candidate

    # requests and results
    def register(self, requests: Iterable[GenerationRequest], aux: bool = False) -> None:
        self._s.register(requests, aux=aux)

    def run_pending(self) -> None:
        self._s.run_pending()

    def result(self, request: GenerationRequest, policy: Optional[EquivalencePolicy] = None) -> PairResult:
        return self._s.result(request, policy or self.policy)

    def suite_results(self, policy: Optional[EquivalencePolicy] = None) -> list[PairResult]:
        return self._s.all_results(policy or self.policy)

    def suite_requests(self) -> list[GenerationRequest]:
        return [self._s._requests[k] for k in self._s.suite_keys()]

    def completions(self, role: str) -> Mapping[str, Completion]:
        return MappingProxyType(self._s._results[role])

    def self_run(self, role: str, request: GenerationRequest) -> Optional[Completion]:
        return self._s._self_outputs[role].get(request.key())

    @property
    def noise_floor(self) -> Mapping[str, Any]:
        return MappingProxyType(self._s.noise_floor)

    def similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        return self._s.similarities(pairs)

    def retokenizer(self) -> Any:
        """One tokenizer for both texts of a pair where a side returned text only (None: none)."""
        return self._s.retokenizer()

    # checks, report sections, state
    def record(self, name: str, verdict: str, detail: str = "", numbers: Optional[dict] = None) -> Any:
        return self._record(name, verdict, detail, numbers or {})

    def section(self, name: str, default: Optional[Callable[[], Any]] = None) -> Any:
        if name not in self._s._sections:
            if default is None:
                return None
            self._s._sections[name] = default()
        return self._s._sections[name]

    def set_section(self, name: str, value: Any) -> None:
        self._s._sections[name] = value

    def state(self, key: str, factory: Callable[[], T]) -> T:
        return self._s.state(key, factory)
