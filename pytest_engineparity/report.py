"""One verdict object -> terminal table, JSON (versioned), JUnit properties, HTML.

Data first: ``build_verdict`` turns checks into per-step verdicts; every renderer reads that.
Writes are atomic (temp file + rename), so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .atomic import atomic_write_text
from .config import MIGRATION_STEPS

__all__ = ["SCHEMA_VERSION", "StepVerdict", "build_steps", "overall_verdict", "terminal_lines",
           "write_json", "write_html", "atomic_write_text", "schema"]

SCHEMA_VERSION = 1
# report sections owned by check modules: JSON key -> "module:function(doc) -> html"
SECTION_RENDERERS = {
    "latency": "pytest_engineparity.latency:html_section",
    "limits": "pytest_engineparity.truncation:html_section",
    "baseline": "pytest_engineparity.baseline:html_section",
    "quality": "pytest_engineparity.quality:html_section",
}
_ORDER = {"fail": 0, "error": 0, "inconclusive": 1, "warn": 2, "pass": 3, "skip": 4}


@dataclass
class StepVerdict:
    step: str
    verdict: str  # "PASS" | "FAIL" | "SKIPPED"
    checks: list = field(default_factory=list)  # list[Check]

    @property
    def passed(self) -> int:
        return sum(c.verdict == "pass" for c in self.checks)

    @property
    def failed(self) -> int:
        return sum(c.verdict in ("fail", "error") for c in self.checks)

    @property
    def worst(self) -> str:
        bad = sorted(self.checks, key=lambda c: _ORDER.get(c.verdict, 5))
        if not bad or bad[0].verdict in ("pass", "skip"):
            return ""
        c = bad[0]
        return f"{c.name}: {c.detail}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "verdict": self.verdict.lower(), "passed": self.passed,
                "failed": self.failed, "worst": self.worst, "checks": [c.to_dict() for c in self.checks]}


def build_steps(checks: Sequence[Any]) -> list[StepVerdict]:
    steps = []
    for step in MIGRATION_STEPS:
        mine = [c for c in checks if c.step == step]
        if any(c.verdict in ("fail", "error") for c in mine):
            v = "FAIL"
        elif any(c.verdict == "pass" for c in mine):
            v = "PASS"
        else:
            v = "SKIPPED"
        steps.append(StepVerdict(step, v, mine))
    return steps


def overall_verdict(steps: Sequence[StepVerdict]) -> tuple[str, str]:
    """("pass"|"fail", reason). Nothing that ran is never a pass."""
    failed = [s.step for s in steps if s.verdict == "FAIL"]
    if failed:
        return "fail", f"step(s) failed: {', '.join(failed)}"
    if not any(s.verdict == "PASS" for s in steps):
        return "fail", "no migration step ran a check"
    return "pass", "every step that ran passed"


def terminal_lines(steps: Sequence[StepVerdict], verdict: tuple[str, str], width: int = 100) -> list[str]:
    rows = [("step", "verdict", "passed", "failed", "worst finding")]
    for s in steps:
        rows.append((s.step, s.verdict, str(s.passed), str(s.failed), s.worst.replace("\n", " ")))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for r in rows:
        head = "  ".join(r[i].ljust(w[i]) for i in range(4))
        rest = max(10, width - len(head) - 2)
        tail = r[4] if len(r[4]) <= rest else r[4][: rest - 1] + "…"
        out.append(f"{head}  {tail}".rstrip())
    out.append(f"overall: {verdict[0].upper()} ({verdict[1]})")
    return out


def schema() -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "report.schema.json").read_text(encoding="utf-8"))


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


# -- HTML ------------------------------------------------------------------------------------
def _svg_histogram(values: Sequence[float], threshold: Optional[float], bins: int = 20) -> str:
    if not values:
        return "<p>No forked outputs were scored (every pair was identical or errored).</p>"
    lo, hi = min(min(values), 0.0), 1.0
    counts = [0] * bins
    for v in values:
        i = int((v - lo) / (hi - lo + 1e-12) * bins)
        counts[min(max(i, 0), bins - 1)] += 1
    W, H, pad = 480, 160, 24
    bw = (W - 2 * pad) / bins
    top = max(counts) or 1
    bars = []
    for i, c in enumerate(counts):
        h = (H - 2 * pad) * c / top
        x = pad + i * bw
        bars.append(f'<rect x="{x:.1f}" y="{H - pad - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="#4a78b5">'
                    f"<title>{c}</title></rect>")
    line = ""
    if threshold is not None:
        tx = pad + (threshold - lo) / (hi - lo) * (W - 2 * pad)
        line = (f'<line x1="{tx:.1f}" y1="{pad / 2}" x2="{tx:.1f}" y2="{H - pad}" stroke="#c0392b" stroke-dasharray="4"/>'
                f'<text x="{tx + 3:.1f}" y="{pad}" font-size="11" fill="#c0392b">threshold {threshold:.2f}</text>')
    axis = (f'<line x1="{pad}" y1="{H - pad}" x2="{W - pad}" y2="{H - pad}" stroke="#333"/>'
            f'<text x="{pad}" y="{H - 6}" font-size="11">{lo:.2f}</text>'
            f'<text x="{W - pad - 20}" y="{H - 6}" font-size="11">1.00</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
            f'aria-label="similarity histogram">{"".join(bars)}{line}{axis}</svg>')


def write_html(path: str | Path, doc: dict[str, Any]) -> None:
    e = html.escape
    verdict = doc["verdict"]
    rows = "".join(
        f"<tr class='{e(s['verdict'])}'><td>{e(s['step'])}</td><td>{e(s['verdict'].upper())}</td>"
        f"<td>{s['passed']}</td><td>{s['failed']}</td><td>{e(s['worst'])}</td></tr>"
        for s in doc["steps"]
    )
    checks = "".join(
        f"<tr class='{e(c['verdict'])}'><td>{e(s['step'])}</td><td>{e(c['name'])}</td><td>{e(c['verdict'])}</td>"
        f"<td><pre>{e(c['detail'][:2000])}</pre></td></tr>"
        for s in doc["steps"] for c in s["checks"]
    )
    prompts = []
    sims = []
    for p in doc.get("prompts", []):
        comp = p["comparison"]
        if comp.get("similarity") is not None and not comp.get("exact"):
            sims.append(float(comp["similarity"]))
        cls = "pass" if comp["equivalent"] else "fail"
        prompts.append(
            f"<details class='{cls}'><summary>{e(p['id'])} — {e(comp['reason'])}</summary>"
            f"<table><tr><th>reference</th><th>candidate</th></tr><tr>"
            f"<td><pre>{e(p['reference'].get('text') or p['reference'].get('error') or '')}</pre></td>"
            f"<td><pre>{e(p['candidate'].get('text') or p['candidate'].get('error') or '')}</pre></td></tr>"
            f"<tr><td>finish: {e(str(p['reference'].get('finish_reason')))}</td>"
            f"<td>finish: {e(str(p['candidate'].get('finish_reason')))}</td></tr></table>"
            f"<pre>{e(p.get('explain', ''))}</pre></details>"
        )
    thr = doc.get("settings", {}).get("similarity")
    extra = []
    for key, where in SECTION_RENDERERS.items():
        if doc.get(key) is not None:
            import importlib

            mod, _, fn = where.partition(":")
            extra.append(getattr(importlib.import_module(mod), fn)(doc))
    engines = "".join(f"<li><b>{e(x['role'])}</b>: {e(x['name'])} — {e(str((x.get('info') or {}).get('version')))}</li>"
                      for x in doc.get("engines", []))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>engine parity: {e(verdict.upper())}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}tr.fail td,details.fail summary{{color:#b00}}
tr.pass td:nth-child(2),details.pass summary{{color:#070}}pre{{white-space:pre-wrap;margin:0}}
h1.fail{{color:#b00}}h1.pass{{color:#070}}</style></head><body>
<h1 class="{e(verdict)}">Verdict: {e(verdict.upper())}</h1><p>{e(doc.get('reason', ''))}</p>
<ul>{engines}</ul>
<h2>Migration steps</h2><table><tr><th>step</th><th>verdict</th><th>passed</th><th>failed</th><th>worst finding</th></tr>{rows}</table>
<h2>Similarity of forked outputs</h2>{_svg_histogram(sims, thr)}
{''.join(extra)}
<h2>Checks</h2><table><tr><th>step</th><th>check</th><th>verdict</th><th>detail</th></tr>{checks}</table>
<h2>Prompts ({len(prompts)})</h2>{''.join(prompts)}
<h2>Environment</h2><pre>{e(json.dumps(doc.get('environment', {}), indent=2, default=str))}</pre>
</body></html>"""
    atomic_write_text(path, page)
