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

from .engines.base import EngineSpec

__all__ = ["ConfigError", "ParityConfig", "OPTIONS", "parse_engine_pair", "load_engine_config",
           "MIGRATION_STEPS", "EMBEDDED"]

MIGRATION_STEPS = ("stable-model", "staging-compile", "benchmark-parity", "canary", "cutover")
EMBEDDED = "<embedded>"  # target placeholder: the embedded default model, prepared at engine start

# defaults for bare kinds on the embedded model (a 2,048-token context on every engine)
EMBEDDED_ARGS = {
    "hf": {"max_model_len": 2048, "dtype": "float32"},
    "vllm": {"max_model_len": 2048, "enforce_eager": True, "dtype": "float32"},
    # (vLLM-CPU picks bfloat16 for "auto"; the embedded pair compares like with like in fp32)
    "trtllm": {},
}
INLINE_KINDS_WITH_URL = {"openai"}
ENGINE_KEYS = {"kind", "model", "engine_dir", "target", "base_url", "tokenizer", "python", "args",
               "api_key_env", "env", "start_timeout", "request_timeout", "devices"}


class ConfigError(ValueError):
    """A bad option, ini value or config file entry; the message names it."""


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


def _str(raw: Any) -> str:
    return str(raw)


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
           "fail when candidate/reference latency is surely above RATIO (default: 1.10)",
           _float("--parity-max-slowdown", 1.0, 100.0), 1.10),
    Option("latency_runs", "--parity-latency-runs", "N",
           "repeat the latency batch N times for more samples (default: 1)", _int("--parity-latency-runs", 1), 1),
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
           "largest accuracy drop (percentage points) still 'equivalent' (default: 1)",
           _float("--parity-max-quality-drop", 0.0, 100.0), 1.0),
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
    latency_runs: int = 1
    warmup: int = 2
    baseline: Optional[str] = None
    baseline_update: bool = False
    tasks: Optional[str] = None
    max_quality_drop: float = 1.0
    single_engine: bool = False  # --engine-pair=ENGINE with --parity-baseline: one engine, as the candidate
    engines: dict = field(default_factory=dict)  # named engines from the config file
    rootdir: str = "."

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
        try:
            from .latency import parse_sla
        except ImportError:  # pragma: no cover - the module ships with the package
            raise ConfigError("--parity-sla: latency checks are not available") from None
        cfg.sla_bounds = parse_sla(cfg.sla)
    if values["engine_pair"]:
        from .baseline import expand_single_engine

        raw, cfg.single_engine = expand_single_engine(values["engine_pair"], cfg.baseline)
        cfg.engine_pair = parse_engine_pair(raw, engines, single=cfg.single_engine)
        for spec in cfg.engine_pair:
            spec.request_timeout = float(spec.request_timeout if spec.request_timeout != 600.0 else cfg.request_timeout)
            spec.start_timeout = float(spec.start_timeout if spec.start_timeout != 900.0 else cfg.start_timeout)
    return cfg


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
            target=resolve(target) if kind not in INLINE_KINDS_WITH_URL else target,
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
        if target is None and kind in EMBEDDED_ARGS:
            spec.target = EMBEDDED
            spec.args = {**EMBEDDED_ARGS[kind], **spec.args}
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
                if kind not in EMBEDDED_ARGS:
                    raise ConfigError(f"--engine-pair: {kind!r} needs a target, e.g. {kind}:http://127.0.0.1:8000/v1")
                spec = EngineSpec(kind=kind, target=EMBEDDED, name=kind, args=dict(EMBEDDED_ARGS[kind]))
            else:
                spec = EngineSpec(kind=kind, target=target, name=item)
        specs.append(spec)
    if specs[0].label == specs[1].label and not single:
        specs[0].name = f"{specs[0].label} (reference)"
        specs[1].name = f"{specs[1].label} (candidate)"
    return specs[0], specs[1]
