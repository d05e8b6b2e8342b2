"""Latency SLA bounds: ``--parity-sla="ttft_p99<=500ms,tpot_p50<=40ms,throughput>=100tok/s"``
parsed once, at the option boundary, into ``SlaBound`` objects. Low layer: config parses with it,
the latency family judges with it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ConfigError

__all__ = ["METRICS", "SlaBound", "parse_sla"]

METRICS = ("ttft", "tpot", "itl", "e2e")  # per-request latency metrics, seconds

_SLA_HELP = "expected METRIC_STAT<=VALUE[ms|s] or throughput>=N tok/s"
_NUM_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_LAT_RE = re.compile(r"^([a-z0-9]+)_(p[0-9.]+)\s*<=\s*(" + _NUM_RE.pattern + r")\s*([a-z]*)$", re.I)
_THR_RE = re.compile(r"^throughput\s*>=\s*(" + _NUM_RE.pattern + r")\s*([a-z/ ]*)$", re.I)
_PCT_RE = re.compile(r"^p(\d+(?:\.\d+)?)$")


# --------------------------------------------------------------------------------------------
# SLA bounds


@dataclass(frozen=True)
class SlaBound:
    """One SLA clause: ``ttft_p99<=500ms`` (limit in seconds) or ``throughput>=100tok/s``."""

    metric: str  # ttft | tpot | itl | e2e | throughput
    stat: Optional[str]  # "p99"; None for throughput
    limit: float  # seconds; tokens per second for throughput
    text: str  # the clause, normalised: "ttft_p99<=500ms"

    @property
    def q(self) -> Optional[float]:
        return float(self.stat[1:]) / 100.0 if self.stat else None

    @property
    def op(self) -> str:
        return ">=" if self.metric == "throughput" else "<="

    @property
    def name(self) -> str:
        """The check's name in the report: ``sla:ttft_p99<=500ms``."""
        return "sla:" + self.text

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "metric": self.metric, "stat": self.stat, "q": self.q, "op": self.op,
                "limit": self.limit, "unit": "tok/s" if self.metric == "throughput" else "s"}


def parse_sla(raw: str) -> list[SlaBound]:
    """Parse ``--parity-sla``: comma-separated clauses ``METRIC_STAT<=VALUE(ms|s)`` (metric ttft,
    tpot, itl or e2e; stat a percentile such as p50, p99, p99.9) or ``throughput>=N tok/s``.

    Raises ``ConfigError`` naming the bad clause.
    """
    bounds: list[SlaBound] = []
    seen: dict[tuple[str, Optional[str]], str] = {}
    for clause in str(raw).split(","):
        clause = clause.strip()
        if not clause:
            continue
        bound = _parse_clause(clause)
        key = (bound.metric, bound.stat)
        if key in seen:
            raise ConfigError(f"--parity-sla: clauses {seen[key]!r} and {clause!r} bound the same statistic; keep one")
        seen[key] = clause
        bounds.append(bound)
    if not bounds:
        raise ConfigError(f"--parity-sla: no bounds in {raw!r} ({_SLA_HELP})")
    return bounds


def _bad(clause: str, why: str = _SLA_HELP) -> ConfigError:
    return ConfigError(f"--parity-sla: bad clause {clause!r} ({why})")


def _parse_clause(clause: str) -> SlaBound:
    m = _THR_RE.match(clause)
    if m:
        value, unit = float(m.group(1)), m.group(2).replace(" ", "").lower()
        if unit not in ("tok/s", "tokens/s"):
            raise _bad(clause, "throughput is in tokens per second: write e.g. throughput>=100tok/s")
        if value <= 0:
            raise _bad(clause, "a throughput bound must be > 0 tok/s")
        return SlaBound("throughput", None, value, f"throughput>={_num(value)}tok/s")
    m = _LAT_RE.match(clause)
    if not m:
        if clause.lower().startswith("throughput"):
            raise _bad(clause, "throughput takes a lower bound: throughput>=N tok/s")
        raise _bad(clause)
    metric, stat, value_s, unit = m.group(1).lower(), m.group(2).lower(), m.group(3), m.group(4).lower()
    if metric not in METRICS:
        raise _bad(clause, f"unknown metric {metric!r}; use ttft, tpot, itl, e2e or throughput")
    pm = _PCT_RE.match(stat)
    if not pm or not 0.0 < float(pm.group(1)) < 100.0:
        raise _bad(clause, f"unknown statistic {stat!r}; use a percentile between p0 and p100, e.g. p50, p99, p99.9")
    if unit not in ("ms", "s"):
        raise _bad(clause, f"missing time unit: write {value_s}ms or {value_s}s" if not unit
                   else f"unknown time unit {unit!r}; use ms or s")
    value = float(value_s)
    if value <= 0:
        raise _bad(clause, "a latency bound must be > 0")
    seconds = value / 1000.0 if unit == "ms" else value
    return SlaBound(metric, stat, seconds, f"{metric}_{stat}<={_num(value)}{unit}")


def _num(x: float) -> str:
    return f"{x:g}"


