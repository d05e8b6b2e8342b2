"""Options and config, parsed once into typed objects.

Every value is resolved command line -> ini key (``engineparity_*`` in pytest.ini / tox.ini /
``[tool.pytest.ini_options]``) -> ``[tool.engineparity]`` in pyproject.toml -> default.
Bad values raise ``ConfigError`` naming the value; the plugin turns it into ``pytest.UsageError``.
No pytest import here: the parsers are unit-testable alone.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .engines.base import EngineSpec, EngineSpecError
from .errors import ConfigError

__all__ = ["ConfigError", "ParityConfig", "OPTIONS", "parse_engine_pair", "load_engine_config",
           "MIGRATION_STEPS", "EMBEDDED", "LoadPlan", "parse_load_plan"]

MIGRATION_STEPS = ("stable-model", "staging-compile", "benchmark-parity", "canary", "cutover")
EMBEDDED = "<embedded>"  # target placeholder: the embedded default model, prepared at engine start

ENGINE_KEYS = {"kind", "model", "engine_dir", "target", "base_url", "tokenizer", "python", "args",
               "api_key_env", "env", "start_timeout", "request_timeout", "devices"}


def _caps(kind: str, where: str = "") -> Any:
    """The adapter's declared capabilities (config asks them, never a kind name). An adapter that
    cannot be loaded here is a config error naming ``where`` (exit 4), not an internal error."""
    from .engines.registry import capabilities_of

    try:
        return capabilities_of(kind)
    except EngineSpecError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc} (an adapter named as module:Class must be "
                          "importable by pytest itself too: put its folder on PYTHONPATH)") from None


def _float(name: str, lo: float, hi: float, lo_open: bool = False):
    def parse(raw: Any) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
        if not (lo < value if lo_open else lo <= value) or value > hi:
            raise ConfigError(f"{name}: {raw!r} is out of range ({'(' if lo_open else '['}{lo}, {hi}])")
        return value
    return parse


def _int(name: str, lo: int):
    def parse(raw: Any) -> int:
        try:
            value = int(str(raw))
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
        if value < lo:
            raise ConfigError(f"{name}: {raw!r} must be >= {lo}")
        return value
    return parse


def _bool(name: str):
    def parse(raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true/false, got {raw!r}")
    return parse


def _choice(name: str, choices: tuple):
    def parse(raw: Any) -> str:
        v = str(raw).strip().lower()
        if v not in choices:
            raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
        return v
    return parse


def _str(raw: Any) -> str:
    return str(raw)


# --------------------------------------------------------------------------------------------
# --parity-load: the load plan (parsed here, at the option boundary; checks/load.py runs it)

LOAD_MODES = ("concurrency", "rate")
_LOAD_HELP = ('expected e.g. "concurrency=1,8,32" or "rate=2,4,8/s", optionally with ";requests=N", '
              '";output=N" (fixed output tokens, ignore_eos), ";input=N" (synthetic prompt tokens), '
              '";runs=N", ";good=SHARE"')


@dataclass(frozen=True)
class LoadPlan:
    """``--parity-load``: one sweep of load levels, the same seeded schedule for both engines.

    ``mode`` is ``"concurrency"`` (closed loop: at most ``level`` requests in flight, the next sent
    as one finishes) or ``"rate"`` (open loop: Poisson arrivals at ``level`` requests per second,
    from one seeded schedule). ``requests``: requests per level and run (None: the default of the
    load family); ``output``: every request asks for exactly this many tokens (``ignore_eos``,
    ``min_tokens = max_tokens``); ``input``: synthetic prompts of this many tokens (instead of the
    suite's declared requests); ``runs``: timed runs per level and engine; ``good``: the goodput
    share a level needs to count towards capacity at SLO; ``stats``: the percentiles each level's
    slowdown verdict judges (p50 by default: 30 requests settle it; a tail such as p90 needs more
    requests per level for the same precision)."""

    mode: str
    levels: tuple
    requests: Optional[int] = None
    output: Optional[int] = None
    input: Optional[int] = None
    runs: int = 1
    good: float = 0.9
    stats: tuple = ("p50",)
    text: str = ""

    def label(self, level: float) -> str:
        """``"concurrency=4"`` / ``"rate=2/s"``: how a level is named in checks and reports."""
        return f"concurrency={level:g}" if self.mode == "concurrency" else f"rate={level:g}/s"

    @property
    def unit(self) -> str:
        return "requests in flight" if self.mode == "concurrency" else "requests/s"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "levels": list(self.levels), "requests": self.requests, "output": self.output,
                "input": self.input, "runs": self.runs, "good": self.good, "stats": list(self.stats), "text": self.text,
                "labels": [self.label(x) for x in self.levels]}


def parse_load_plan(raw: Any) -> LoadPlan:
    """Parse ``--parity-load``: ``"concurrency=1,8,32"`` or ``"rate=2,4,8/s"`` plus optional
    ``;key=value`` settings (``requests``, ``output``, ``input``, ``runs``, ``good``, ``stats``). Raises
    ``ConfigError`` naming the option and the bad part."""
    text = str(raw).strip()

    def bad(why: str) -> ConfigError:
        return ConfigError(f"--parity-load: {why} in {text!r} ({_LOAD_HELP})")

    if not text:
        raise bad("empty plan")
    mode: Optional[str] = None
    levels: tuple = ()
    extra: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise bad(f"{part!r} is not KEY=VALUE")
        if key in LOAD_MODES:
            if mode is not None:
                raise bad("one sweep per run: give concurrency=... or rate=..., not both")
            mode = key
            if key == "rate" and value.lower().endswith("/s"):
                value = value[:-2]
            out = []
            for item in (v.strip() for v in value.split(",")):
                try:
                    x = float(item) if key == "rate" else int(item)
                except ValueError:
                    raise bad(f"{key} level {item!r} is not " + ("a number" if key == "rate" else "an integer")) from None
                if not x > 0 or x != x or x == float("inf"):
                    raise bad(f"{key} level {item!r} must be > 0 and finite")
                out.append(x)
            if len(set(out)) != len(out) or out != sorted(out):
                raise bad(f"{key} levels must be distinct and increasing")
            levels = tuple(out)
        elif key in ("requests", "output", "input", "runs"):
            try:
                n = int(value)
            except ValueError:
                raise bad(f"{key}={value!r} is not an integer") from None
            if n < 1:
                raise bad(f"{key} must be >= 1")
            extra[key] = n
        elif key == "stats":
            stats = tuple(v.strip().lower() for v in value.split(","))
            for st in stats:
                try:
                    ok = st.startswith("p") and 0.0 < float(st[1:]) < 100.0
                except ValueError:
                    ok = False
                if not ok:
                    raise bad(f"stats: {st!r} is not a percentile such as p50, p90, p99")
            extra[key] = stats
        elif key == "good":
            try:
                share = float(value)
            except ValueError:
                raise bad(f"good={value!r} is not a number") from None
            if not 0.0 < share <= 1.0:
                raise bad("good (the goodput share a level needs) must be in (0, 1]")
            extra[key] = share
        else:
            raise bad(f"unknown key {key!r}")
    if mode is None:
        raise bad("no load levels (concurrency=... or rate=...)")
    return LoadPlan(mode, levels, text=text, **extra)


@dataclass(frozen=True)
class Option:
    dest: str  # attribute of ParityConfig
    flag: str  # command-line flag
    metavar: str
    help: str
    parse: Any
    default: Any = None
    flag_only: bool = False  # a switch without a value on the command line

    @property
    def ini(self) -> str:
        return "engineparity_" + self.dest

    @property
    def toml(self) -> str:
        return self.dest.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("engine_pair", "--engine-pair", "REF,CAND",
           "the two engines to compare (or one ENGINE with --parity-baseline): names from --engine-config or inline kind[:target] "
           "(vllm, hf, trtllm, openai:http://host:port/v1, vllm:/models/x); bare kinds use the "
           "embedded SmolLM2-135M-Instruct", _str),
    Option("engine_config", "--engine-config", "FILE", "TOML file defining named engines ([engines.NAME])", _str),
    Option("report", "--parity-report", "PATH.json", "write the verdict as JSON", _str),
    Option("html", "--parity-html", "PATH.html", "write a self-contained HTML report", _str),
    Option("prompts", "--parity-prompts", "FILE.jsonl",
           "your own prompts or OpenAI request bodies, one JSON object per line", _str),
    Option("sample", "--parity-sample", "FRACTION",
           "replay a seeded random sample of --parity-prompts (e.g. 0.10 for a canary)",
           _float("--parity-sample", 0.0, 1.0, lo_open=True), 1.0),
    Option("seed", "--parity-seed", "N", "seed for sampling and shuffles (default: 0)", _int("--parity-seed", 0), 0),
    Option("min_equivalence", "--parity-min-equivalence", "RATE",
           "suite passes only if the one-sided lower confidence bound of the equivalence rate is >= RATE "
           "(default: 0.90)", _float("--parity-min-equivalence", 0.0, 1.0), 0.90),
    Option("confidence", "--parity-confidence", "LEVEL", "confidence level of suite-level bounds (default: 0.95)",
           _float("--parity-confidence", 0.5, 1.0, lo_open=False), 0.95),
    Option("similarity", "--parity-similarity", "COSINE",
           "minimum sentence-embedding cosine similarity for outputs that fork (default: 0.80)",
           _float("--parity-similarity", -1.0, 1.0), 0.80),
    Option("top_k", "--parity-top-k", "K",
           "each engine's token must be in the other's top-K logprobs up to the first divergence (default: 5)",
           _int("--parity-top-k", 1), 5),
    Option("tie_tolerance", "--parity-tie-tolerance", "NATS",
           "a fork where each engine rates the other's token within NATS of its own is a numerical tie "
           "and counts as equivalent whatever follows (default: 0.30)",
           _float("--parity-tie-tolerance", 0.0, 100.0), 0.30),
    Option("noise_floor", "--parity-noise-floor", "BOOL",
           "also run each engine against itself (shuffled order, other batch split) (default: true)",
           _bool("--parity-noise-floor"), True),
    Option("max_tokens", "--parity-max-tokens", "N",
           "max_tokens for prompts that do not set it (default: 64)", _int("--parity-max-tokens", 1), 64),
    Option("request_timeout", "--parity-timeout", "SECONDS",
           "fail an engine that stays silent this long during a batch (default: 600)",
           _float("--parity-timeout", 1.0, 86400.0), 600.0),
    Option("start_timeout", "--parity-start-timeout", "SECONDS",
           "fail an engine that is not up after this long (default: 900)",
           _float("--parity-start-timeout", 1.0, 86400.0), 900.0),
    Option("sla", "--parity-sla", "BOUNDS",
           'latency bounds, e.g. "ttft_p99<=500ms,tpot_p50<=40ms,e2e_p99<=8s,throughput>=100tok/s"', _str),
    Option("max_slowdown", "--parity-max-slowdown", "RATIO",
           "opt-in: the slowdown check runs only when this is given (e.g. 1.10); it fails when "
           "candidate/reference latency is surely above RATIO", _float("--parity-max-slowdown", 1.0, 100.0), 1.10),
    Option("latency_runs", "--parity-latency-runs", "N",
           "timed runs per engine; run-to-run variation is judged by resampling whole runs (default: 5)",
           _int("--parity-latency-runs", 1), 5),
    Option("warmup", "--parity-warmup", "N",
           "warm-up requests per engine before latency samples, excluded from them (default: 2)",
           _int("--parity-warmup", 0), 2),
    Option("baseline", "--parity-baseline", "DIR",
           "save/compare per-prompt outputs, latency and the machine fingerprint (post-driver-update check)", _str),
    Option("baseline_update", "--parity-baseline-update", "",
           "rewrite the baseline in --parity-baseline instead of comparing", _bool("--parity-baseline-update"),
           False, flag_only=True),
    Option("tasks", "--parity-tasks", "FILE.jsonl", "labelled tasks scored right/wrong on each engine", _str),
    Option("max_quality_drop", "--parity-max-quality-drop", "POINTS",
           "largest accuracy drop (percentage points) still 'equivalent' (default: 3; the built-in 300 "
           "items can show it for an identical pair)", _float("--parity-max-quality-drop", 0.0, 100.0), 3.0),
    Option("alpha", "--parity-alpha", "ALPHA",
           "family-wise false-alarm budget of the whole run: each statistical fail decision gets "
           "ALPHA / --parity-gates (default: 0.05)", _float("--parity-alpha", 0.0, 0.5, lo_open=True), 0.05),
    Option("gates", "--parity-gates", "N",
           "statistical gates the alpha budget is split over; the report says how many ran (default: 10)",
           _int("--parity-gates", 1), 10),
    Option("inconclusive", "--parity-inconclusive", "block|pass",
           "what an inconclusive verdict does to the exit status: block (exit 1, verdict INCONCLUSIVE, "
           "default) or pass (exit 0; the report still says INCONCLUSIVE)", _choice("--parity-inconclusive", ("block", "pass")),
           "block"),
    Option("load", "--parity-load", "PLAN",
           'opt-in load sweep, the same seeded schedule on both engines (servers only: openai, vllm-serve, '
           'trtllm-serve): "concurrency=1,8,32" or "rate=2,4,8/s", optionally ";requests=N;output=N;input=N;'
           'runs=N;good=0.9;stats=p50,p90"', parse_load_plan),
)


@dataclass
class ParityConfig:
    engine_pair: Optional[tuple[EngineSpec, EngineSpec]] = None
    engine_config: Optional[str] = None
    report: Optional[str] = None
    html: Optional[str] = None
    prompts: Optional[str] = None
    sample: float = 1.0
    seed: int = 0
    min_equivalence: float = 0.90
    confidence: float = 0.95
    similarity: float = 0.80
    top_k: int = 5
    tie_tolerance: float = 0.30
    noise_floor: bool = True
    max_tokens: int = 64
    request_timeout: float = 600.0
    start_timeout: float = 900.0
    sla: Optional[str] = None
    sla_bounds: list = field(default_factory=list)  # parsed by latency.parse_sla
    max_slowdown: float = 1.10
    latency_runs: int = 5
    warmup: int = 2
    baseline: Optional[str] = None
    baseline_update: bool = False
    tasks: Optional[str] = None
    max_quality_drop: float = 3.0
    alpha: float = 0.05
    gates: int = 10
    inconclusive: str = "block"
    load: Optional[LoadPlan] = None  # --parity-load, parsed
    single_engine: bool = False  # --engine-pair=ENGINE with --parity-baseline: one engine, as the candidate
    engines: dict = field(default_factory=dict)  # named engines from the config file
    rootdir: str = "."

    @property
    def alpha_per_decision(self) -> float:
        """The alpha share of one statistical fail decision (Bonferroni over ``gates``)."""
        return self.alpha / self.gates

    @property
    def active(self) -> bool:
        return self.engine_pair is not None


def read_pyproject_table(rootdir: Path) -> dict[str, Any]:
    path = Path(rootdir) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("engineparity", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.engineparity] must be a table")
    return table


def build_config(cli: dict[str, Any], ini: dict[str, Any], table: dict[str, Any], rootdir: str) -> ParityConfig:
    """Resolve every option (cli > ini > [tool.engineparity] > default) and parse it once."""
    known = {o.toml for o in OPTIONS} | {"engines"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"[tool.engineparity]: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw, origin = None, None
        if cli.get(opt.dest) is not None:
            raw, origin = cli[opt.dest], opt.flag
        elif ini.get(opt.dest) not in (None, ""):
            raw, origin = ini[opt.dest], f"ini {opt.ini}"
        elif opt.toml in table:
            raw, origin = table[opt.toml], f"[tool.engineparity] {opt.toml}"
        if raw is None:
            values[opt.dest] = opt.default
            continue
        try:
            values[opt.dest] = opt.parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {origin})") from None
    cfg = ParityConfig(rootdir=rootdir)
    for k, v in values.items():
        if k != "engine_pair":
            setattr(cfg, k, v)
    engines: dict[str, EngineSpec] = {}
    if "engines" in table:
        engines.update(parse_engines_table(table["engines"], "[tool.engineparity.engines]", Path(rootdir)))
    if cfg.engine_config:
        engines.update(load_engine_config(cfg.engine_config, Path(rootdir)))
    cfg.engines = engines
    if cfg.sla:
        from .sla import parse_sla

        cfg.sla_bounds = parse_sla(cfg.sla)
    if values["engine_pair"]:
        raw, cfg.single_engine = expand_single_engine(values["engine_pair"], cfg.baseline)
        cfg.engine_pair = parse_engine_pair(raw, engines, single=cfg.single_engine)
        for spec in cfg.engine_pair:
            # an engine table's own value wins, even when it equals the default (600 s stays 600 s)
            if "request_timeout" not in spec.explicit:
                spec.request_timeout = float(cfg.request_timeout)
            if "start_timeout" not in spec.explicit:
                spec.start_timeout = float(cfg.start_timeout)
    return cfg


def expand_single_engine(raw: str, baseline: Optional[str]) -> tuple[str, bool]:
    """``--engine-pair`` with one engine: allowed only with ``--parity-baseline`` (the
    post-driver-update check compares that engine with its own saved baseline).

    Returns (the REF,CAND string to parse, single): ``("trtllm:/e", "bl")`` ->
    ``("trtllm:/e,trtllm:/e", True)``; a two-engine value comes back unchanged with ``False``.
    Raises ``config.ConfigError`` for one engine without a baseline.
    """
    parts = [p.strip() for p in str(raw).split(",")]
    if len(parts) != 1:
        return raw, False
    if not parts[0]:
        raise ConfigError(f"--engine-pair: expected REF,CAND, got {raw!r}")
    if not baseline:
        raise ConfigError(f"--engine-pair: expected REF,CAND (two engines separated by one comma), got {raw!r};"
                          " one engine alone needs --parity-baseline=DIR (the post-driver-update check compares"
                          " it with its saved baseline)")
    return f"{parts[0]},{parts[0]}", True


def load_engine_config(path: str, rootdir: Path) -> dict[str, EngineSpec]:
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = rootdir / p
    if not p.is_file():
        raise ConfigError(f"--engine-config: file {path!r} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--engine-config {path}: not valid TOML: {exc}") from None
    engines = data.get("engines")
    if not isinstance(engines, dict) or not engines:
        raise ConfigError(f"--engine-config {path}: needs at least one [engines.NAME] table")
    return parse_engines_table(engines, str(p), p.parent)


def parse_engines_table(engines: Any, where: str, base: Path) -> dict[str, EngineSpec]:
    if not isinstance(engines, dict):
        raise ConfigError(f"{where}: engines must be a table of [engines.NAME] tables")
    out: dict[str, EngineSpec] = {}
    for name, entry in engines.items():
        ctx = f"{where}: [engines.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{ctx} must be a table")
        unknown = set(entry) - ENGINE_KEYS
        if unknown:
            raise ConfigError(f"{ctx}: unknown key(s) {sorted(unknown)}; known: {sorted(ENGINE_KEYS)}")
        kind = entry.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"{ctx}: 'kind' is required (vllm, hf, trtllm, openai, ...)")
        targets = [entry[k] for k in ("model", "engine_dir", "target", "base_url") if k in entry]
        if len(targets) > 1:
            raise ConfigError(f"{ctx}: give only one of model, engine_dir, target, base_url")
        target = targets[0] if targets else None
        for key, typ in (("args", dict), ("env", dict), ("tokenizer", str), ("python", str),
                         ("api_key_env", str), ("devices", list)):
            if key in entry and not isinstance(entry[key], typ):
                raise ConfigError(f"{ctx}: {key!r} must be a {typ.__name__}, got {type(entry[key]).__name__}")
        if target is not None and not isinstance(target, str):
            raise ConfigError(f"{ctx}: the model/engine_dir/base_url must be a string")

        def resolve(p: Optional[str]) -> Optional[str]:
            if p is None or "://" in p or os.path.isabs(p):
                return p
            return str((base / p).resolve())

        spec = EngineSpec(
            kind=kind,
            target=target if _caps(kind, ctx).url_target else resolve(target),
            name=name,
            tokenizer=resolve(entry.get("tokenizer")),
            python=entry.get("python"),
            args=dict(entry.get("args", {})),
            api_key_env=entry.get("api_key_env"),
            env={str(k): str(v) for k, v in entry.get("env", {}).items()},
            devices=entry.get("devices"),
        )
        for key in ("start_timeout", "request_timeout"):
            if key in entry:
                spec.__setattr__(key, _float(f"{ctx} {key}", 1.0, 86400.0)(entry[key]))
                spec.explicit.append(key)
        embedded = _caps(kind).embedded_args
        if target is None and embedded is not None:
            spec.target = EMBEDDED
            spec.args = {**embedded, **spec.args}
        out[name] = spec
    return out


def parse_engine_pair(raw: str, named: dict[str, EngineSpec], single: bool = False) -> tuple[EngineSpec, EngineSpec]:
    from .engines.registry import available_kinds

    parts = [p.strip() for p in str(raw).split(",")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"--engine-pair: expected REF,CAND (two engines separated by one comma), got {raw!r}"
        )
    kinds = available_kinds()
    specs = []
    for side, item in zip(("reference", "candidate"), parts):
        if item in named:
            spec = EngineSpec(**{**named[item].to_dict()})
        else:
            kind, sep, target = item.partition(":")
            if kind not in kinds:
                hint = f"; named engines: {', '.join(sorted(named))}" if named else ""
                raise ConfigError(
                    f"--engine-pair: unknown engine {item!r} for the {side}; known kinds: "
                    f"{', '.join(sorted(kinds))}{hint}"
                )
            if sep and not target:
                raise ConfigError(f"--engine-pair: {item!r} has an empty target after ':'")
            if not target:
                embedded = _caps(kind).embedded_args
                if embedded is None:
                    example = "http://127.0.0.1:8000/v1" if _caps(kind).url_target else "/path/to/model"
                    raise ConfigError(f"--engine-pair: {kind!r} needs a target, e.g. {kind}:{example}")
                spec = EngineSpec(kind=kind, target=EMBEDDED, name=kind, args=dict(embedded))
            else:
                spec = EngineSpec(kind=kind, target=target, name=item)
        specs.append(spec)
    if specs[0].label == specs[1].label and not single:
        specs[0].name = f"{specs[0].label} (reference)"
        specs[1].name = f"{specs[1].label} (candidate)"
    return specs[0], specs[1]
