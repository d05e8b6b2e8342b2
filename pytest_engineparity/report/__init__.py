"""One verdict object -> terminal table, JSON (versioned), JUnit properties, HTML.

Data first: ``build_verdict`` turns checks into per-step verdicts; every renderer reads that.
Writes are atomic (temp file + rename), so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..checks.verdicts import ERROR, FAIL, INCONCLUSIVE, PASS, SEVERITY, SHARED, SKIP, WARN
from ..config import MIGRATION_STEPS
from ..runtime.files import atomic_write_text

__all__ = ["SCHEMA_VERSION", "StepVerdict", "build_steps", "overall_verdict", "terminal_lines", "summary_lines",
           "write_json", "write_html", "atomic_write_text", "schema", "build_document", "error_control",
           "exit_blocks"]

SCHEMA_VERSION = 2  # 2: inconclusive and shared verdicts, exit_blocks, error_control, engine capabilities
_ORDER = SEVERITY


@dataclass
class StepVerdict:
    step: str
    verdict: str  # "PASS" | "FAIL" | "INCONCLUSIVE" | "SKIPPED"
    checks: list = field(default_factory=list)  # list[Check]

    @property
    def passed(self) -> int:
        return sum(c.verdict == "pass" for c in self.checks)

    @property
    def failed(self) -> int:
        return sum(c.verdict in ("fail", "error") for c in self.checks)

    @property
    def worst(self) -> str:
        bad = sorted(self.checks, key=lambda c: _ORDER.get(c.verdict, 6))
        if not bad or bad[0].verdict in (PASS, SKIP):
            return ""
        c = bad[0]
        return f"{c.name}: {_finding(c.detail)}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "verdict": self.verdict.lower(), "passed": self.passed,
                "failed": self.failed, "worst": self.worst, "checks": [c.to_dict() for c in self.checks]}


def _finding(detail: str) -> str:
    """The finding, not the exception path pytest puts before it."""
    m = re.match(r"^(?:[A-Za-z_][\w]*\.)+[A-Za-z_]\w*(?:Mismatch|Error|Exception|Unavailable): ", detail or "")
    return detail[m.end():] if m else detail


def _gating(c: Any) -> bool:
    return bool((c.numbers or {}).get("gating", True))


def build_steps(checks: Sequence[Any]) -> list[StepVerdict]:
    """Per step: FAIL if a check failed (a measured difference or a user bound surely missed) or
    errored; else INCONCLUSIVE if a gating check could not decide; else PASS if anything ran
    (``shared`` findings and ``warn`` do not fail a step); else SKIPPED."""
    steps = []
    for step in MIGRATION_STEPS:
        mine = [c for c in checks if c.step == step]
        if any(c.verdict in (FAIL, ERROR) for c in mine):
            v = "FAIL"
        elif any(c.verdict == INCONCLUSIVE and _gating(c) for c in mine):
            v = "INCONCLUSIVE"
        elif any(c.verdict in (PASS, SHARED, WARN, INCONCLUSIVE) for c in mine):
            v = "PASS"
        else:
            v = "SKIPPED"
        steps.append(StepVerdict(step, v, mine))
    return steps


def overall_verdict(steps: Sequence[StepVerdict]) -> tuple[str, str]:
    """("pass"|"fail"|"inconclusive", reason). Nothing that ran is never a pass."""
    failed = [s.step for s in steps if s.verdict == "FAIL"]
    if failed:
        errored = [s.step for s in steps if s.verdict == "FAIL" and all(c.verdict == ERROR for c in s.checks
                                                                          if c.verdict in (FAIL, ERROR))]
        if errored and len(errored) == len(failed):
            return "fail", (f"step(s) {', '.join(failed)} could not run: an engine or an input failed "
                            "(see the first error above); nothing was shown to differ")
        return "fail", f"step(s) failed: {', '.join(failed)}"
    if not any(s.verdict in ("PASS", "INCONCLUSIVE") for s in steps):
        return "fail", "no migration step ran a check"
    open_ = [s.step for s in steps if s.verdict == "INCONCLUSIVE"]
    if open_:
        return "inconclusive", (f"not enough evidence in step(s) {', '.join(open_)} (no difference shown; "
                                "see each check for what would settle it)")
    return "pass", "every step that ran passed"


def exit_blocks(verdict: str, inconclusive_policy: str, steps: Sequence[StepVerdict] = ()) -> bool:
    """Whether the run's verdict makes the exit status non-zero: a failed step, or an inconclusive
    one under ``--parity-inconclusive=block`` (a run where no step ran keeps pytest's own status)."""
    if verdict == "fail":
        return any(s.verdict == "FAIL" for s in steps)
    return verdict == "inconclusive" and inconclusive_policy == "block"


def error_control(checks: Sequence[Any], alpha: float, gates: int) -> dict[str, Any]:
    """How the run's false-alarm rate is bounded: each statistical fail decision ran at
    ``alpha / gates`` (Bonferroni); with ``m`` decisions the family-wise bound is m x share."""
    share = alpha / gates
    decisions = [c.name for c in checks if "alpha_fail" in (c.numbers or {})]
    m = len(decisions)
    bound = min(1.0, m * share)
    return {"alpha": alpha, "gates": gates, "alpha_per_decision": share, "decisions": m,
            "decision_checks": decisions, "family_wise_bound": bound,
            "note": (f"{m} statistical fail decisions at {share:g} each: the chance that a healthy pair "
                     f"fails any of them is at most {bound:.3g}" + ("" if m <= gates else
                     f" (more than --parity-gates={gates}: raise it to keep the bound at {alpha:g})"))}


def terminal_lines(steps: Sequence[StepVerdict], verdict: tuple[str, str], width: int = 100) -> list[str]:
    rows = [("step", "verdict", "passed", "failed", "worst finding")]
    for s in steps:
        rows.append((s.step, s.verdict, str(s.passed), str(s.failed), s.worst.replace("\n", " ")))
    return _table_lines(rows, verdict, width)


def _table_lines(rows: list, verdict: tuple[str, str], width: int = 100) -> list[str]:
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for r in rows:
        head = "  ".join(r[i].ljust(w[i]) for i in range(4))
        rest = max(10, width - len(head) - 2)
        tail = r[4] if len(r[4]) <= rest else r[4][: rest - 1] + "…"
        out.append(f"{head}  {tail}".rstrip())
    out.append(f"overall: {verdict[0].upper()} ({verdict[1]})")
    return out


def build_document(session: Any, checks: Sequence[Any]) -> dict[str, Any]:
    """The report document (JSON-ready) from the parity session and every recorded check."""
    steps = build_steps(checks)
    verdict, reason = overall_verdict(steps)
    prompts = []
    for res in session.finished_results():
        d = res.to_dict()
        d["explain"] = "" if res.comparison.exact else res.explain()
        prompts.append(d)
    try:
        from ..runtime.fingerprint import machine_fingerprint

        env = machine_fingerprint()
    except Exception as exc:  # the report must still be written
        env = {"error": f"fingerprint failed: {exc}"}
    cfg = session.cfg
    n = len(prompts)
    engines = []
    for h in session.handles:
        d = h.describe()
        try:
            from ..engines.base import effective_capabilities
            from ..engines.registry import capabilities_of

            d["capabilities"] = effective_capabilities(capabilities_of(h.spec.kind, h.spec), h.info).to_dict()
        except Exception as exc:  # an unknown third-party kind still gets a report
            d["capabilities"] = {"error": str(exc)}
        engines.append(d)
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": verdict,
        "reason": reason,
        "exit_blocks": exit_blocks(verdict, cfg.inconclusive, steps),
        "error_control": error_control(checks, cfg.alpha, cfg.gates),
        "steps": [s.to_dict() for s in steps],
        "engines": engines,
        "environment": env,
        "settings": {"min_equivalence": cfg.min_equivalence, "confidence": cfg.confidence,
                     "similarity": cfg.similarity, "top_k": cfg.top_k, "tie_tolerance": cfg.tie_tolerance,
                     "noise_floor": cfg.noise_floor, "prompts_file": cfg.prompts, "sample": cfg.sample,
                     "seed": cfg.seed, "alpha": cfg.alpha, "gates": cfg.gates, "inconclusive": cfg.inconclusive},
        "summary": {"prompts": n, "exact": sum(p["comparison"]["exact"] for p in prompts),
                    "equivalent": sum(p["comparison"]["equivalent"] for p in prompts),
                    "noise_floor": session.noise_floor, "single_calls": session.single_calls,
                    "schedule": session.schedule,
                    "similarity_seconds": session.timings["similarity_s"]},
        "prompts": prompts,
        **session.sections,
    }


def terminal_table(doc: dict[str, Any]) -> list[str]:
    """The terminal table from the JSON document's rows."""
    steps = [StepVerdict(s["step"], s["verdict"].upper(), []) for s in doc["steps"]]
    rows = [("step", "verdict", "passed", "failed", "worst finding")]
    for s, d in zip(steps, doc["steps"]):
        rows.append((s.step, s.verdict, str(d["passed"]), str(d["failed"]), d["worst"].replace("\n", " ")))
    return _table_lines(rows, (doc["verdict"], doc["reason"]))


def summary_lines(doc: dict[str, Any]) -> list[tuple[str, Optional[str]]]:
    """The run's summary at the end of the terminal output, as ``(line, colour)`` pairs (colour:
    ``red`` / ``green`` / ``yellow`` / None): the engines, the prompt counts, the step table, each
    check family's own lines (``terminal_lines(doc)`` of a family that has it), the false-alarm
    bound and what INCONCLUSIVE means."""
    from ..checks import FAMILIES, family_class

    out: list[tuple[str, Optional[str]]] = []
    if len(doc["engines"]) == 1:
        out.append((f"engine: {doc['engines'][0]['name']} (against its baseline)", None))
    else:
        ref, cand = doc["engines"]
        out.append((f"reference: {ref['name']}   candidate: {cand['name']}", None))
    sm = doc["summary"]
    out.append((f"prompts: {sm['prompts']}, exact: {sm['exact']}, equivalent: {sm['equivalent']}"
                + "".join(f", {r} noise floor {d['n_exact']}/{d['n']}" for r, d in sm["noise_floor"].items()), None))
    colour = {"fail": "red", "pass": "green", "inconclusive": "yellow"}
    verdicts = [None] + [s["verdict"] for s in doc["steps"]] + [doc["verdict"]]
    for v, line in zip(verdicts, terminal_table(doc)):
        out.append((line, colour.get(v or "")))
    for name in FAMILIES:  # a family's own summary lines (the load sweep: one line per level)
        lines_of = getattr(family_class(name), "terminal_lines", None)
        out += [(line, None) for line in (lines_of(doc) if lines_of is not None else [])]
    ec = doc.get("error_control") or {}
    if ec:
        out.append((f"false-alarm control: {ec['note']}", None))
    if doc["verdict"] == "inconclusive":
        out.append(("INCONCLUSIVE is not a failure of the candidate: no difference was shown, and not enough "
                    "evidence to pass. " + ("It blocks (exit 1) under --parity-inconclusive=block."
                                           if doc["exit_blocks"] else "It does not block (--parity-inconclusive=pass)."),
                    "yellow"))
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


def _verdict_note(doc: dict[str, Any]) -> str:
    """What the verdict words mean here, and how the false-alarm rate is bounded."""
    e = html.escape
    parts = []
    if doc.get("verdict") == "inconclusive":
        parts.append("INCONCLUSIVE is not a failure of the candidate: no difference was shown, and the "
                     "evidence is not enough to pass. Each inconclusive check says what would settle it. "
                     + ("It blocks (exit 1) under --parity-inconclusive=block." if doc.get("exit_blocks")
                        else "It does not block (--parity-inconclusive=pass)."))
    shared = [c for s in doc.get("steps", []) for c in s.get("checks", []) if c.get("verdict") == "shared"]
    if shared:
        parts.append(f"{len(shared)} finding(s) are shared: both engines behave the same way there "
                     "(reported, never a failure of the migration).")
    ec = doc.get("error_control") or {}
    if ec.get("note"):
        parts.append("False-alarm control: " + str(ec["note"]) + ".")
    return "".join(f"<p>{e(p)}</p>" for p in parts)


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
    from ..checks import FAMILIES, family_class

    for name in FAMILIES:
        fam = family_class(name)
        if fam.section and doc.get(fam.section) is not None:
            extra.append(fam.render_html(doc))
    engines = "".join(f"<li><b>{e(x['role'])}</b>: {e(x['name'])} — {e(str((x.get('info') or {}).get('version')))}</li>"
                      for x in doc.get("engines", []))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>engine parity: {e(verdict.upper())}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}tr.fail td,details.fail summary{{color:#b00}}
tr.pass td:nth-child(2),details.pass summary{{color:#070}}pre{{white-space:pre-wrap;margin:0}}
h1.fail{{color:#b00}}h1.pass{{color:#070}}h1.inconclusive,tr.inconclusive td{{color:#a60}}tr.shared td{{color:#555}}
</style></head><body>
<h1 class="{e(verdict)}">Verdict: {e(verdict.upper())}</h1><p>{e(doc.get('reason', ''))}</p>{_verdict_note(doc)}
<ul>{engines}</ul>
<h2>Migration steps</h2><table><tr><th>step</th><th>verdict</th><th>passed</th><th>failed</th><th>worst finding</th></tr>{rows}</table>
<h2>Similarity of forked outputs</h2>{_svg_histogram(sims, thr)}
{''.join(extra)}
<h2>Checks</h2><table><tr><th>step</th><th>check</th><th>verdict</th><th>detail</th></tr>{checks}</table>
<h2>Prompts ({len(prompts)})</h2>{''.join(prompts)}
<h2>Environment</h2><pre>{e(json.dumps(doc.get('environment', {}), indent=2, default=str))}</pre>
</body></html>"""
    atomic_write_text(path, page)
