"""Compare what two engines returned for the same request: pure functions, no engine, no pytest.

Two *correct* engines at bf16 routinely fork on greedy decoding: a near-tie between two tokens
resolves differently under different kernels, and from then on the texts differ although both are
fine. Token exactness is therefore information, not the verdict. A pair is *equivalent* when

* it is an exact match, or
* up to and including the first divergent token every token one engine chose is in the other's
  top-k (a near-tie fork, not a broken model or wrong sampling settings), and the two texts are
  semantically similar (cosine similarity of sentence embeddings >= a threshold).

Positions are 0-based indices into the generated tokens. Positions after the first divergence are
never compared: their contexts differ.

Engines differ in what they return (``engines.base.Capabilities``): a compiled TensorRT-LLM engine
behind trtllm-serve returns text only, no token ids and no logprobs. Each comparison uses the
strongest layer both sides support and records which ran and why (``PairComparison.layers``,
``decided_by``, ``layers_note``):

* ``token-ids``: both returned token ids: exact match, else the first divergent token;
* ``logprob-closeness`` / ``numerical-tie``: both returned top-k logprobs (>= 2 alternatives);
* ``text`` / ``retokenized-text`` / ``characters``: a side returned text only: identical text is an
  exact match; otherwise both texts are re-tokenized with one tokenizer (``Retokenizer``) to find
  the first divergent token, or compared by characters when no tokenizer is reachable; where the
  other side's real ids agree with the re-tokenized prefix, its logprobs at the fork are reported;
* ``semantic-similarity``: after a fork that is not a numerical tie, the similarity decides.

A side that *cannot* return logprobs is never failed for not returning them: closeness is then
"not checked", and the similarity decides.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dataclasses_replace
from typing import Any, Callable, Optional, Sequence

from ..engines.base import Capabilities
from ..types import Completion, TokenLogprobs

__all__ = [
    "first_divergence",
    "TopKMiss",
    "Fork",
    "LogprobCheck",
    "check_logprobs_close",
    "EquivalencePolicy",
    "PairComparison",
    "compare_pair",
    "Retokenizer",
    "TokenSource",
    "choose_retokenizer",
    "LAYERS",
    "render_divergence",
    "SelfConsistency",
    "self_consistency",
]

REFERENCE = "reference"
CANDIDATE = "candidate"

# comparison layers, strongest first (PairComparison.layers / decided_by)
L_ERRORS = "error-class"
L_IDS = "token-ids"
L_TEXT = "text"
L_RETOKENIZED = "retokenized-text"
L_CHARS = "characters"
L_CLOSENESS = "logprob-closeness"
L_TIE = "numerical-tie"
L_SIMILARITY = "semantic-similarity"
LAYERS = (L_ERRORS, L_IDS, L_TEXT, L_RETOKENIZED, L_CHARS, L_CLOSENESS, L_TIE, L_SIMILARITY)


# --------------------------------------------------------------------------------------------
# token-level helpers


def first_divergence(ref_ids: Sequence[int], cand_ids: Sequence[int]) -> Optional[int]:
    """Index of the first position where the two token sequences differ, or ``None`` if identical.

    A length difference counts at the shorter length: ``[1, 2]`` vs ``[1, 2, 3]`` diverge at 2.
    """
    n = min(len(ref_ids), len(cand_ids))
    for i in range(n):
        if int(ref_ids[i]) != int(cand_ids[i]):
            return i
    if len(ref_ids) != len(cand_ids):
        return n
    return None


def _logprob_of(entry: TokenLogprobs, token_id: int) -> Optional[float]:
    """The logprob this engine gave ``token_id`` at this position, if it reported it."""
    if token_id in entry.top:
        return float(entry.top[token_id])
    if token_id == entry.token_id and entry.logprob is not None:
        return float(entry.logprob)
    return None


def _ranked(entry: TokenLogprobs) -> list[tuple[int, float]]:
    """Every (token id, logprob) the engine reported at this position, best first."""
    items = {int(k): float(v) for k, v in entry.top.items()}
    if entry.token_id not in items and entry.logprob is not None:
        items[int(entry.token_id)] = float(entry.logprob)
    return sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))


def _in_top_k(entry: TokenLogprobs, token_id: int, top_k: Optional[int]) -> bool:
    """Whether ``token_id`` is within this engine's top-k at this position.

    With ``top_k=None`` "top-k" means every alternative the engine reported. Ties at the boundary
    count in favour of the token (its rank is the number of tokens strictly more likely).
    """
    lp = _logprob_of(entry, token_id)
    if lp is None:
        return False
    k = top_k if top_k is not None else max(len(entry.top), 1)
    better = sum(1 for tid, v in entry.top.items() if int(tid) != token_id and float(v) > lp)
    return better < k


def _piece(c: Completion, i: int) -> Optional[str]:
    """Text of output token ``i`` of ``c`` (from ``token_texts`` or the logprobs' ``decoded``)."""
    if c.token_texts is not None and i < len(c.token_texts) and c.token_texts[i] is not None:
        return str(c.token_texts[i])
    if c.logprobs is not None and i < len(c.logprobs) and i < len(c.token_ids):
        d = c.logprobs[i].decoded
        tid = int(c.token_ids[i])
        if tid in d:
            return str(d[tid])
    return None


def _token_text(token_id: int, position: int, *sides: Completion) -> Optional[str]:
    """Text for ``token_id`` at ``position`` from whichever engine knows it."""
    for c in sides:
        if position < len(c.token_ids) and int(c.token_ids[position]) == token_id:
            p = _piece(c, position)
            if p is not None:
                return p
        if c.logprobs is not None and position < len(c.logprobs):
            d = c.logprobs[position].decoded
            if token_id in d:
                return str(d[token_id])
    return None


def _show_token(text: Optional[str], token_id: Optional[int]) -> str:
    if text is not None:
        return repr(text)
    if token_id is None:
        return "<end>"
    return f"<id {token_id}>"


def _fmt_cmp(value: float, threshold: float) -> str:
    """``0.91 ≥ 0.80`` with enough digits that the shown numbers agree with the comparison."""
    op = "≥" if value >= threshold else "<"
    for digits in (2, 3, 4, 6):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b or digits == 6:
            return f"{a} {op} {b}"
    return f"{value} {op} {threshold}"  # pragma: no cover


# --------------------------------------------------------------------------------------------
# logprob closeness


@dataclass(frozen=True)
class TopKMiss:
    """One engine chose a token the other engine does not rank within its top-k."""

    position: int
    token_id: int
    token_text: Optional[str]
    chosen_by: str  # "reference" | "candidate"
    missing_from: str  # the other one
    logprob_there: Optional[float]  # what missing_from gave the token, if it reported it
    best_there_id: Optional[int]  # missing_from's own most likely token at this position
    best_there_text: Optional[str]
    best_there_logprob: Optional[float]
    reported: int  # how many alternatives missing_from reported at this position
    top_k: Optional[int]

    def describe(self) -> str:
        """``token 2: candidate ' the' not in reference top-5 (reference gives it -7.31; ...)``."""
        k = f"top-{self.top_k}" if self.top_k is not None else f"reported top-{self.reported}"
        head = (f"token {self.position}: {self.chosen_by} {_show_token(self.token_text, self.token_id)}"
                f" not in {self.missing_from} {k}")
        details = []
        if self.best_there_id is not None and self.best_there_logprob is not None:
            details.append(f"{_show_token(self.best_there_text, self.best_there_id)}"
                           f" {self.best_there_logprob:.2f}")
        mine = _show_token(self.token_text, self.token_id)
        if self.logprob_there is not None:
            details.append(f"{mine} {self.logprob_there:.2f}")
        elif self.top_k is not None and self.reported < self.top_k:
            details.append(f"{mine} not among the {self.reported} alternatives it reported")
        else:
            details.append(f"{mine} not reported")
        return f"{head} ({self.missing_from}: {', '.join(details)})"


@dataclass(frozen=True)
class Fork:
    """What each engine thought of the two candidates at the first divergent position.

    ``ref_gap`` = reference logprob of its own token minus that of the candidate's token (in the
    reference distribution); ``cand_gap`` likewise in the candidate's. ``None`` where a token was
    not reported or one side ended there (its token id is then ``None``).
    """

    position: int
    ref_token_id: Optional[int]
    cand_token_id: Optional[int]
    ref_gap: Optional[float]
    cand_gap: Optional[float]
    near_tie: bool  # both tokens within the other engine's top-k


@dataclass(frozen=True)
class LogprobCheck:
    """Result of :func:`check_logprobs_close`.

    ``ok`` is False whenever ``available`` is False (nothing was shown to be close); callers decide
    whether unavailable logprobs are acceptable (see :class:`EquivalencePolicy`).
    """

    ok: bool
    available: bool
    reason: str
    positions_checked: int
    failures: tuple[TopKMiss, ...] = ()
    max_abs_logprob_diff: Optional[float] = None  # chosen token, identical positions before the fork
    divergence: Optional[int] = None
    fork: Optional[Fork] = None
    top_k: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _miss(pos: int, token_id: int, chosen_by: str, missing_from: str, other: TokenLogprobs,
          top_k: Optional[int], ref: Completion, cand: Completion) -> TopKMiss:
    ranked = _ranked(other)
    best = ranked[0] if ranked else (None, None)
    return TopKMiss(
        position=pos,
        token_id=token_id,
        token_text=_token_text(token_id, pos, ref, cand),
        chosen_by=chosen_by,
        missing_from=missing_from,
        logprob_there=_logprob_of(other, token_id),
        best_there_id=best[0],
        best_there_text=_token_text(best[0], pos, ref, cand) if best[0] is not None else None,
        best_there_logprob=best[1],
        reported=len(other.top),
        top_k=top_k,
    )


def check_logprobs_close(ref: Completion, cand: Completion, top_k: Optional[int] = None) -> LogprobCheck:
    """Check that the two engines agree on what was likely, up to and including the first fork.

    At every position up to and including the first divergence, each engine's chosen token must
    be within the other's top-k (``top_k=None``: within whatever the engine reported). Also reports
    the largest |logprob difference| of the chosen token at identical positions before the fork,
    and, at the fork, how far apart the two candidate tokens are in each engine's distribution.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k!r}")
    div = first_divergence(ref.token_ids, cand.token_ids)

    def unavailable(reason: str) -> LogprobCheck:
        return LogprobCheck(ok=False, available=False, reason=reason, positions_checked=0,
                            divergence=div, top_k=top_k)

    for name, c in ((REFERENCE, ref), (CANDIDATE, cand)):
        if not c.ok:
            return unavailable(f"{name} returned an error")
        if c.logprobs is None:
            return unavailable(f"{name} returned no logprobs")

    n_common = min(len(ref.token_ids), len(cand.token_ids))
    last = n_common - 1 if div is None else min(div, n_common - 1)
    assert ref.logprobs is not None and cand.logprobs is not None
    for name, c in ((REFERENCE, ref), (CANDIDATE, cand)):
        lps: list[TokenLogprobs] = c.logprobs  # type: ignore[assignment]
        if len(lps) < last + 1:
            return unavailable(f"{name} logprobs cover {len(lps)} of the {last + 1} tokens to check")
        for i in range(last + 1):
            if int(lps[i].token_id) != int(c.token_ids[i]):
                return unavailable(f"{name} logprobs do not match its token ids at token {i}")

    failures: list[TopKMiss] = []
    max_diff: Optional[float] = None
    fork: Optional[Fork] = None
    for i in range(last + 1):
        r, c = ref.logprobs[i], cand.logprobs[i]
        rt, ct = int(ref.token_ids[i]), int(cand.token_ids[i])
        if rt == ct:
            if r.logprob is not None and c.logprob is not None:
                d = abs(float(r.logprob) - float(c.logprob))
                max_diff = d if max_diff is None else max(max_diff, d)
        elif not r.top or not c.top:
            who = REFERENCE if not r.top else CANDIDATE
            return LogprobCheck(
                ok=False, available=False,
                reason=f"{who} reported no top-k alternatives at the fork (token {i})",
                positions_checked=i, failures=tuple(failures), max_abs_logprob_diff=max_diff,
                divergence=div, top_k=top_k)
        # at an identical position an engine that reported nothing about its own token (no logprob,
        # no alternatives) tells us nothing: skip rather than fail
        if not _in_top_k(c, rt, top_k) and not (rt == ct and _logprob_of(c, rt) is None):
            failures.append(_miss(i, rt, REFERENCE, CANDIDATE, c, top_k, ref, cand))
        if not _in_top_k(r, ct, top_k) and not (rt == ct and _logprob_of(r, ct) is None):
            failures.append(_miss(i, ct, CANDIDATE, REFERENCE, r, top_k, ref, cand))
        if rt != ct:
            r_own, r_other = _logprob_of(r, rt), _logprob_of(r, ct)
            c_own, c_other = _logprob_of(c, ct), _logprob_of(c, rt)
            fork = Fork(
                position=i, ref_token_id=rt, cand_token_id=ct,
                ref_gap=(r_own - r_other) if r_own is not None and r_other is not None else None,
                cand_gap=(c_own - c_other) if c_own is not None and c_other is not None else None,
                near_tie=_in_top_k(c, rt, top_k) and _in_top_k(r, ct, top_k),
            )
    if div is not None and div >= n_common:  # one side ended where the other went on
        fork = Fork(position=div,
                    ref_token_id=int(ref.token_ids[div]) if div < len(ref.token_ids) else None,
                    cand_token_id=int(cand.token_ids[div]) if div < len(cand.token_ids) else None,
                    ref_gap=None, cand_gap=None, near_tie=False)

    checked = last + 1
    if failures:
        reason = failures[0].describe() + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
    elif fork is not None and fork.near_tie:
        reason = f"near-tie fork at token {fork.position}"
    elif fork is not None:
        ended = REFERENCE if fork.ref_token_id is None else CANDIDATE
        reason = f"{ended} ended at token {fork.position}; the tokens before agree"
    else:
        reason = f"all {checked} tokens agree"
    return LogprobCheck(ok=not failures, available=True, reason=reason, positions_checked=checked,
                        failures=tuple(failures), max_abs_logprob_diff=max_diff, divergence=div,
                        fork=fork, top_k=top_k)


# --------------------------------------------------------------------------------------------
# one pair


@dataclass(frozen=True)
class EquivalencePolicy:
    """When a non-identical pair still counts as equivalent.

    ``require_logprobs_close=True``: a pair that is not an exact match needs logprobs from both
    engines, and they must be close. ``False``: missing logprobs are tolerated (the similarity
    alone decides), but logprobs that are present and contradict each other still fail the pair.
    """

    similarity_threshold: float = 0.80
    top_k: Optional[int] = 5
    require_logprobs_close: bool = True
    # A fork where each engine rates the other's token within this many nats of its own is
    # numerical noise (bf16, batch shape, kernel order), not a behaviour change: what follows is
    # a different but equally likely continuation, so the similarity of the tails does not
    # decide. Set to None to always require the similarity.
    tie_tolerance: Optional[float] = 0.30

    def __post_init__(self) -> None:
        if not -1.0 <= self.similarity_threshold <= 1.0:
            raise ValueError(f"similarity_threshold must be in [-1, 1], got {self.similarity_threshold!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k!r}")
        if self.tie_tolerance is not None and self.tie_tolerance < 0:
            raise ValueError(f"tie_tolerance must be >= 0 or None, got {self.tie_tolerance!r}")


@dataclass(frozen=True)
class PairComparison:
    """The verdict on one request: data first (``to_dict``), text in ``reason``."""

    exact: bool
    divergence: Optional[int]
    logprobs: LogprobCheck
    similarity: Optional[float]
    equivalent: bool
    reason: str
    similarity_threshold: float = 0.80
    layers: tuple = ()  # the layers that ran, strongest first (see the module docstring)
    decided_by: Optional[str] = None  # the layer whose outcome is the verdict
    layers_note: str = ""  # why a stronger layer did not run ("candidate returns no logprobs: ...")
    divergence_basis: Optional[str] = None  # what ``divergence`` counts: "token ids", "re-tokenized text"
    missing_required_logprobs: bool = False  # forked, logprobs required by the policy, not returned

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d


_CATEGORIES = (
    ("over-length prompt", re.compile(
        r"maximum context length|max_seq_len|max_num_tokens|max_input_len|prompt (is )?too long|"
        r"exceeds? (the )?(model'?s? )?(context|limit)|input (tokens|length).*(exceed|limit)|"
        r"prompt length .* (exceed|should not exceed)", re.I)),
)


def error_category(c: Completion) -> Optional[str]:
    """What kind of rejection an engine's error message describes, across engines' wordings and
    classes (None when it is not one we recognise: then only identical classes count as alike)."""
    text = f"{c.error or ''}"
    for name, pattern in _CATEGORIES:
        if pattern.search(text):
            return name
    return None


def _identical(ref: Completion, cand: Completion) -> bool:
    return list(map(int, ref.token_ids)) == list(map(int, cand.token_ids)) and ref.text == cand.text


def _error_text(c: Completion) -> str:
    msg = " ".join(str(c.error).split())
    if len(msg) > 160:
        msg = msg[:157] + "..."
    return f"{c.error_type}: {msg}" if c.error_type else msg


@dataclass(frozen=True)
class Retokenizer:
    """One tokenizer applied to BOTH texts of a pair when a side returned text only, so the first
    divergent token can be found in one token space. ``source`` says whose tokenizer it is."""

    tokenize: Callable[[str], Sequence[int]]
    source: str


@dataclass
class TokenSource:
    """One engine's tokenizer as :func:`choose_retokenizer` sees it (a callable that raises when
    the engine cannot tokenize)."""

    role: str
    name: str
    tokenize: Callable[[str], Sequence[int]]
    returns_token_ids: bool = True


def choose_retokenizer(sources: Sequence[TokenSource], probe: str = "Hello, world") -> tuple[Optional[Retokenizer], str]:
    """The tokenizer to re-tokenize text-only outputs with, and a note saying which and why.

    A text-only engine's own tokenizer comes first; else the other engine's (its real token ids
    then align with the re-tokenized text wherever both use the same tokenizer, which each
    comparison verifies on the prefix before using its logprobs). ``(None, why)`` when no side
    can tokenize."""
    ordered = sorted(sources, key=lambda s: s.returns_token_ids)  # text-only sides first
    failures = []
    for src in ordered:
        try:
            src.tokenize(probe)
        except Exception as exc:  # the engine cannot tokenize: try the other one
            failures.append(f"{src.role} {src.name!r}: {' '.join(str(exc).split())[:200]}")
            continue
        whose = "its own" if not src.returns_token_ids else f"the {src.role}'s"
        return Retokenizer(src.tokenize, f"{src.role} {src.name!r} tokenizer"), (
            f"text-only outputs re-tokenized with {whose} tokenizer ({src.role} {src.name!r})")
    return None, "no tokenizer reachable (" + "; ".join(failures) + ")"


def _has_ids(c: Completion) -> bool:
    """Whether ``c`` carries its output token ids (an empty output needs none)."""
    return bool(c.token_ids) or c.text == ""


def _who_lacks(ref: Completion, cand: Completion, ref_caps: Optional[Capabilities],
               cand_caps: Optional[Capabilities]) -> str:
    parts = []
    for name, c, caps in ((REFERENCE, ref, ref_caps), (CANDIDATE, cand, cand_caps)):
        if _has_ids(c):
            continue
        if caps is not None and not caps.token_ids:
            what = "no token ids" + (" or logprobs" if caps.logprobs_top_k == 0 else "")
            parts.append(f"{name} returns {what}")
        else:
            parts.append(f"{name} returned no token ids")
    return " and ".join(parts)


def _closeness_limit(ref_caps: Optional[Capabilities], cand_caps: Optional[Capabilities],
                     policy_k: Optional[int]) -> tuple[Optional[int], str]:
    """``(top_k to check closeness with, why closeness cannot run)``: a side whose capabilities
    give no alternatives makes closeness impossible (``why`` non-empty); a side that returns
    fewer alternatives than the policy's top-k narrows the check to what it returns."""
    why = []
    k = policy_k
    for name, caps in ((REFERENCE, ref_caps), (CANDIDATE, cand_caps)):
        if caps is None:
            continue
        ck = caps.closeness_top_k()
        if ck == 0:
            why.append(f"{name} returns " + ("no logprobs" if caps.logprobs_top_k == 0
                                             else "only the sampled token's logprob"))
        elif k is None or ck < k:
            k = ck
    return k, " and ".join(why)


def compare_pair(ref: Completion, cand: Completion, similarity: Optional[float],
                 policy: EquivalencePolicy = EquivalencePolicy(), *,
                 ref_caps: Optional[Capabilities] = None, cand_caps: Optional[Capabilities] = None,
                 retokenizer: Optional[Retokenizer] = None) -> PairComparison:
    """Decide whether ``cand`` is an acceptable stand-in for ``ref`` on one request.

    Equivalent iff both succeeded and (exact match, or (logprob check ok — or unavailable while
    the policy does not require it — and ``similarity >= policy.similarity_threshold``)). Both
    sides rejecting the request with the same ``error_type`` is equivalent ("both rejected");
    one side failing is not.

    ``ref_caps`` / ``cand_caps`` (each engine's effective ``Capabilities``) say what a side *can*
    return: logprobs a side cannot return are never required, and closeness is checked within
    the top-k both return. A side that returned text only is compared as text (identical text is
    an exact match) and re-tokenized with ``retokenizer`` to find the first divergent token.
    """
    thr = policy.similarity_threshold
    div = first_divergence(ref.token_ids, cand.token_ids)

    def result(exact: bool, lp: LogprobCheck, equivalent: bool, reason: str, layers: Sequence[str],
               decided_by: str, note: str = "", divergence: Optional[int] = div,
               basis: Optional[str] = "token ids", missing: bool = False) -> PairComparison:
        return PairComparison(exact=exact, divergence=divergence, logprobs=lp, similarity=similarity,
                              equivalent=equivalent, reason=reason, similarity_threshold=thr,
                              layers=tuple(layers), decided_by=decided_by, layers_note=note,
                              divergence_basis=basis if divergence is not None else None,
                              missing_required_logprobs=missing)

    if not ref.ok or not cand.ok:
        lp = LogprobCheck(ok=False, available=False, reason="an engine returned an error",
                          positions_checked=0, divergence=div, top_k=policy.top_k)
        errs = (L_ERRORS,)
        if not ref.ok and not cand.ok:
            if ref.error_type == cand.error_type:
                return result(False, lp, True, f"both rejected ({ref.error_type or 'error'})", errs, L_ERRORS)
            rc, cc = error_category(ref), error_category(cand)
            if rc is not None and rc == cc:
                # e.g. vLLM's VLLMValidationError, trtllm's ValueError and an HTTP 400 for the same
                # over-length prompt: the same behaviour; the classes are reported, not judged here
                return result(False, lp, True, f"both rejected as {rc} (reference {ref.error_type or 'error'}, "
                              f"candidate {cand.error_type or 'error'})", errs, L_ERRORS)
            return result(False, lp, False, f"both rejected, differently: reference "
                          f"{ref.error_type or 'error'} vs candidate {cand.error_type or 'error'}", errs, L_ERRORS)
        if not cand.ok:
            return result(False, lp, False, f"candidate error: {_error_text(cand)}", errs, L_ERRORS)
        return result(False, lp, False, f"reference error: {_error_text(ref)}", errs, L_ERRORS)

    if not (_has_ids(ref) and _has_ids(cand)):
        return _compare_text(ref, cand, similarity, policy, ref_caps, cand_caps, retokenizer, result)

    top_k, impossible = _closeness_limit(ref_caps, cand_caps, policy.top_k)
    if impossible:
        lp = LogprobCheck(ok=False, available=False, reason=f"{impossible}: closeness not checked",
                          positions_checked=0, divergence=div, top_k=top_k)
    else:
        lp = check_logprobs_close(ref, cand, top_k)
    layers = [L_IDS]
    note = ""
    if top_k != policy.top_k and not impossible:
        note = f"closeness within top-{top_k}: the most both engines return"
    if _identical(ref, cand):
        return result(True, lp, True, "exact match", layers, L_IDS, note)
    required = policy.require_logprobs_close and not impossible
    if lp.available:
        layers.append(L_CLOSENESS)
    elif impossible:
        note = f"{impossible}: closeness not checked; the similarity decides after the fork"

    # what happened at the token level
    if lp.failures:
        fork_part = lp.reason
    elif div is None:
        fork_part = "same tokens, text differs" if ref.token_ids else "texts differ (no token ids)"
    elif not lp.available:
        if impossible:
            fork_part = f"fork at token {div}, closeness not checked ({impossible})"
        else:
            fork_part = f"fork at token {div}, no logprob check ({lp.reason}"
            fork_part += "; required)" if policy.require_logprobs_close else ")"
    elif lp.fork is not None and lp.fork.near_tie:
        fork_part = f"near-tie fork at token {div}"
    else:
        fork_part = f"length differs at token {div}"
    lp_pass = lp.ok or (not lp.available and not required)
    f = lp.fork
    tie = (policy.tie_tolerance is not None and lp.available and f is not None and f.near_tie
           and f.ref_gap is not None and f.cand_gap is not None
           and max(f.ref_gap, f.cand_gap) <= policy.tie_tolerance)
    if lp.available and f is not None and f.ref_gap is not None and f.cand_gap is not None:
        layers.append(L_TIE)
    if similarity is None:
        sim_part, sim_pass = "no similarity score", False
    else:
        sim_part, sim_pass = f"similarity {_fmt_cmp(float(similarity), thr)}", float(similarity) >= thr
    missing = required and not lp.available
    if tie and not sim_pass and lp_pass:
        assert f is not None and f.ref_gap is not None and f.cand_gap is not None
        return result(False, lp, True, f"{fork_part} (gaps {f.ref_gap:.3f}/{f.cand_gap:.3f} <= "
                      f"{policy.tie_tolerance:.2f} nats: numerical tie), {sim_part}", layers, L_TIE, note)
    layers.append(L_SIMILARITY)
    decided = L_CLOSENESS if (lp.failures or missing) else L_SIMILARITY
    return result(False, lp, lp_pass and sim_pass, f"{fork_part}, {sim_part}", layers, decided, note,
                  missing=missing)


def _compare_text(ref: Completion, cand: Completion, similarity: Optional[float], policy: EquivalencePolicy,
                  ref_caps: Optional[Capabilities], cand_caps: Optional[Capabilities],
                  retokenizer: Optional[Retokenizer], result: Callable[..., PairComparison]) -> PairComparison:
    """A side returned text only: compare texts, find the fork on re-tokenized text, let the
    similarity decide (closeness cannot run without both sides' token ids)."""
    thr = policy.similarity_threshold
    lacks = _who_lacks(ref, cand, ref_caps, cand_caps)
    lp0 = LogprobCheck(ok=False, available=False, reason=f"{lacks}: closeness not checked",
                       positions_checked=0, divergence=None, top_k=policy.top_k)
    if ref.text == cand.text:
        return result(True, lp0, True, f"exact match as text ({lacks})", [L_TEXT], L_TEXT,
                      f"{lacks}: compared as text", divergence=None, basis=None)
    layers = [L_TEXT]
    extra = ""
    if retokenizer is not None:
        try:
            r_ids = [int(t) for t in retokenizer.tokenize(ref.text)]
            c_ids = [int(t) for t in retokenizer.tokenize(cand.text)]
        except Exception as exc:  # a tokenizer that fails here costs only the token position
            retok_error: Optional[str] = " ".join(str(exc).split())[:160]
        else:
            retok_error = None
    if retokenizer is not None and retok_error is None:
        div = first_divergence(r_ids, c_ids)
        layers.append(L_RETOKENIZED)
        basis = "re-tokenized text"
        where = (f"fork at token {div} of the re-tokenized text" if div is not None
                 else "same re-tokenized tokens, text differs")
        note = f"{lacks}: closeness not checked; first divergence from text re-tokenized with the {retokenizer.source}"
        extra = _one_sided_fork(ref, cand, r_ids, c_ids, div, policy.top_k) if div is not None else ""
    else:
        k = len(os.path.commonprefix([ref.text, cand.text]))
        div, basis = None, None
        layers.append(L_CHARS)
        why = f"the tokenizer failed: {retok_error}" if retokenizer is not None else "no tokenizer reachable"
        where = f"texts differ at character {k}"
        note = (f"{lacks}: closeness not checked; {why}, so the divergence is found on characters"
                " (set tokenizer in the engine spec to find the divergent token)")
    lp = dataclasses_replace(lp0, divergence=div)
    layers.append(L_SIMILARITY)
    if similarity is None:
        sim_part, sim_pass = "no similarity score", False
    else:
        sim_part, sim_pass = f"similarity {_fmt_cmp(float(similarity), thr)}", float(similarity) >= thr
    return result(False, lp, sim_pass, f"{where}, closeness not checked ({lacks}){extra}, {sim_part}",
                  layers, L_SIMILARITY, note, divergence=div, basis=basis)


def _one_sided_fork(ref: Completion, cand: Completion, r_ids: list, c_ids: list, div: int,
                    top_k: Optional[int]) -> str:
    """Where one side has real ids and logprobs that agree with the re-tokenized prefix, what it
    thought of the other side's re-tokenized token at the fork (information, not a verdict: the
    re-tokenized token need not be what the text-only engine generated)."""
    for name, other, me, mine, theirs in ((REFERENCE, CANDIDATE, ref, r_ids, c_ids),
                                          (CANDIDATE, REFERENCE, cand, c_ids, r_ids)):
        if not me.token_ids or me.logprobs is None or len(me.logprobs) <= div or div >= len(theirs):
            continue
        if [int(t) for t in me.token_ids[:div + 1]] != mine[:div + 1]:
            continue  # its real tokens do not line up with the re-tokenized ones: positions differ
        entry = me.logprobs[div]
        tok = int(theirs[div])
        text = _token_text(tok, div, me)
        shown = _show_token(text, tok)
        if _in_top_k(entry, tok, top_k):
            own, there = _logprob_of(entry, int(me.token_ids[div])), _logprob_of(entry, tok)
            gap = f", gap {own - there:.3f} nats" if own is not None and there is not None else ""
            return f"; {name} ranks the {other}'s {shown} within its top-{top_k or len(entry.top)}{gap}"
        return f"; {name} does not rank the {other}'s {shown} within its top-{top_k or len(entry.top)}"
    return ""


# --------------------------------------------------------------------------------------------
# the failure message

_ANSI = {"ref": "\x1b[1;32m", "cand": "\x1b[1;31m", "dim": "\x1b[2m", "reset": "\x1b[0m"}
_MAX_LINES = 24


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


class _Line:
    """Segments of (text, style) clipped to a visible width, rendered with or without ANSI."""

    def __init__(self, width: int, color: bool) -> None:
        self.width, self.color = width, color
        self.parts: list[tuple[str, Optional[str]]] = []
        self.used = 0
        self.full = False

    def add(self, text: str, style: Optional[str] = None) -> "_Line":
        if self.full or not text:
            return self
        room = self.width - self.used
        if len(text) > room:
            text, self.full = text[: max(room - 1, 0)] + "…", True
        self.parts.append((text, style))
        self.used += len(text)
        return self

    def render(self) -> str:
        out = []
        for text, style in self.parts:
            out.append(f"{_ANSI[style]}{text}{_ANSI['reset']}" if style and self.color else text)
        return "".join(out)


def _pieces(c: Completion) -> Optional[list[str]]:
    if not c.token_ids:
        return None
    out = []
    for i in range(len(c.token_ids)):
        p = _piece(c, i)
        if p is None:
            return None
        out.append(p)
    return out


def render_divergence(request_label: str, ref: Completion, cand: Completion,
                      comparison: PairComparison, ref_name: str = "reference",
                      cand_name: str = "candidate", width: int = 100, color: bool = False,
                      *, prompt: Optional[str] = None) -> list[str]:
    """The lines of a parity failure message (bounded: at most ~24 lines of at most ``width``).

    Shows the prompt, both outputs aligned at the first divergent token (the common prefix
    collapsed to its last ~40 characters, the divergent token marked ``[[ ]]`` or, with
    ``color=True`` and ``NO_COLOR`` unset, in colour), both engines' top logprobs there, the gap
    between the two candidate tokens in each engine, and the similarity against its threshold.
    ``prompt`` is the prompt text to show when ``request_label`` is only an id.
    """
    width = max(int(width), 40)
    color = bool(color) and not os.environ.get("NO_COLOR")
    name_w = max(len(ref_name), len(cand_name))
    rn, cn = ref_name.ljust(name_w), cand_name.ljust(name_w)
    verdict = "equivalent" if comparison.equivalent else "NOT equivalent"
    # keep "0.91 ≥ 0.80" together when the header wraps (no-break spaces, restored after)
    reason = comparison.reason.replace(" ≥ ", "\u00a0≥\u00a0").replace(" < ", "\u00a0<\u00a0")
    lines = [line.replace("\u00a0", " ") for line in textwrap.wrap(
        f"{_esc(_clip(request_label, 60))}: {verdict}: {reason}", width, subsequent_indent="    ",
        break_long_words=True, max_lines=3, placeholder=" …")]
    lines.append(_clip(f"  prompt: {_esc(prompt if prompt is not None else request_label)}", width))

    def side(label: str) -> _Line:
        return _Line(width, color).add(f"    {label} | ")

    # errors: show each side's outcome and stop
    if not ref.ok or not cand.ok:
        for label, c in ((rn, ref), (cn, cand)):
            text = f"error {_error_text(c)}" if not c.ok else _esc(c.text)
            lines.append(side(label).add(text).render())
        return lines

    div = comparison.divergence
    rp, cp = _pieces(ref), _pieces(cand)
    r_tok: Optional[str]
    c_tok: Optional[str]
    where: Optional[str]
    if div is not None and rp is not None and cp is not None:
        prefix = "".join(rp[:div])
        r_tok = rp[div] if div < len(rp) else None
        c_tok = cp[div] if div < len(cp) else None
        r_rest, c_rest = "".join(rp[div + 1:]), "".join(cp[div + 1:])
        where = f"token {div}"
    else:  # no per-token text: align on characters
        cpre = os.path.commonprefix([ref.text, cand.text])
        prefix, k = cpre, len(cpre)
        if ref.text == cand.text:
            r_tok = c_tok = None
            r_rest = c_rest = ""
        else:
            r_tok = ref.text[k] if k < len(ref.text) else None
            c_tok = cand.text[k] if k < len(cand.text) else None
            r_rest, c_rest = ref.text[k + 1:], cand.text[k + 1:]
        where = f"character {k}" if ref.text != cand.text else None

    tail = _esc(prefix)
    collapsed = len(tail) > 40
    tail = ("…" + tail[-39:]) if collapsed else tail
    if where is None:
        counts = ({len(ref.token_ids)} | {len(cand.token_ids)}) if ref.token_ids and cand.token_ids else set()
        lines.append("  outputs are identical as text" + (f" ({counts.pop()} tokens each)" if len(counts) == 1 else ""))
        lines.append(side(rn).add(_esc(ref.text)).render())
    else:
        lines.append(_clip(f"  first divergence at {where} (0-based); common prefix {len(prefix)} "
                           f"chars{', last 40 shown' if collapsed else ''}:", width))
        for label, tok, rest, style, c in ((rn, r_tok, r_rest, "ref", ref), (cn, c_tok, c_rest, "cand", cand)):
            line = side(label).add(tail, "dim")
            shown = _esc(tok) if tok is not None else f"<end: {c.finish_reason or 'no more tokens'}>"
            if color:
                line.add(shown, style)
            else:
                line.add(f"[[{shown}]]")
            line.add(_esc(rest))
            lines.append(line.render())

    # both engines' top logprobs at the fork
    lp = comparison.logprobs
    fork = lp.fork
    if fork is not None and ref.logprobs is not None and cand.logprobs is not None:
        pos = fork.position
        k = lp.top_k or 5
        lines.append(f"  top-{k} logprobs at token {pos} (* own pick, ^ the other engine's pick):")
        for label, c, own, other in ((rn, ref, fork.ref_token_id, fork.cand_token_id),
                                     (cn, cand, fork.cand_token_id, fork.ref_token_id)):
            line = side(label)
            if pos >= len(c.logprobs or []):
                lines.append(line.add("(ended here)").render())
                continue
            entry = c.logprobs[pos]  # type: ignore[index]
            ranked = _ranked(entry)[:k]
            shown_ids = {tid for tid, _ in ranked}
            ranked_cells: list[tuple[str, bool]] = []  # (text, marked: always kept)
            for tid, v in ranked:
                mark = "*" if tid == own else ("^" if tid == other else "")
                ranked_cells.append(
                    (_esc(f"{_show_token(_token_text(tid, pos, ref, cand), tid)} {v:.3f}{mark}"), bool(mark)))
            extra: list[str] = []
            if other is not None and other not in shown_ids:
                there = _logprob_of(entry, other)
                extra.append(_esc(f"^{_show_token(_token_text(other, pos, ref, cand), other)} "
                                  + (f"{there:.3f}" if there is not None else f"not in top-{len(entry.top)}")))
            # drop unmarked alternatives from the end until the marked ones fit; "…" marks the cut
            room, cut = width - line.used, False
            while True:
                cols = [t for t, _ in ranked_cells] + (["…"] if cut else []) + extra
                droppable = [i for i, (_, marked) in enumerate(ranked_cells) if not marked]
                if len("  ".join(cols)) <= room or not droppable:
                    break
                del ranked_cells[droppable[-1]]
                cut = True
            lines.append(line.add("  ".join(cols)).render())
        if fork.ref_gap is not None or fork.cand_gap is not None:
            def gap(name: str, g: Optional[float], own: Optional[int]) -> str:
                if g is None:
                    missing = other_of[name]
                    tok = _show_token(_token_text(missing, pos, ref, cand), missing) if missing is not None else "?"
                    return f"{name.strip()} does not report {_esc(tok)}"
                tok = _show_token(_token_text(own, pos, ref, cand), own) if own is not None else "?"
                return f"{name.strip()} prefers {_esc(tok)} by {g:.3f}"
            other_of = {ref_name: fork.cand_token_id, cand_name: fork.ref_token_id}
            tie = "near tie" if fork.near_tie else "NOT a near tie"
            lines.append(_clip(f"  gap: {gap(ref_name, fork.ref_gap, fork.ref_token_id)}; "
                               f"{gap(cand_name, fork.cand_gap, fork.cand_token_id)} -> {tie}", width))
    for miss in lp.failures[:3]:
        lines.append(_clip(f"  ! {_esc(miss.describe())}", width))
    if len(lp.failures) > 3:
        lines.append(f"  ! ... and {len(lp.failures) - 3} more top-k misses")
    if not lp.available:
        lines.append(_clip(f"  logprobs: {lp.reason}", width))
    if lp.max_abs_logprob_diff is not None:
        n_same = lp.divergence if lp.divergence is not None else lp.positions_checked
        lines.append(f"  max |logprob diff| over the {n_same} common tokens: {lp.max_abs_logprob_diff:.4f}")
    if comparison.similarity is not None:
        lines.append(f"  similarity {_fmt_cmp(comparison.similarity, comparison.similarity_threshold)}"
                     f" (threshold {comparison.similarity_threshold:.2f})")
    else:
        lines.append(f"  similarity: not computed (threshold {comparison.similarity_threshold:.2f})")
    if len(lines) > _MAX_LINES:
        lines = lines[: _MAX_LINES - 1] + [f"  ... {len(lines) - _MAX_LINES + 1} more lines"]
    return lines


# --------------------------------------------------------------------------------------------
# noise floor


@dataclass(frozen=True)
class SelfConsistency:
    """How often one engine reproduces itself exactly: the noise floor for the pair's exact rate."""

    n: int
    n_exact: int
    rate: float
    mismatched: tuple[int, ...] = field(default_factory=tuple)  # request indices that differed
    divergences: tuple[Optional[int], ...] = field(default_factory=tuple)  # per mismatched index

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def self_consistency(first_run: Sequence[Completion], second_run: Sequence[Completion]) -> SelfConsistency:
    """Exact-match rate between two runs of the same engine on the same requests (same order).

    Two errors with the same ``error_type`` count as a match. Raises ``ValueError`` when the runs
    differ in length or are empty.
    """
    if len(first_run) != len(second_run):
        raise ValueError(f"the two runs differ in length ({len(first_run)} vs {len(second_run)})")
    if not first_run:
        raise ValueError("self_consistency needs at least one request")
    mismatched: list[int] = []
    divs: list[Optional[int]] = []
    for i, (a, b) in enumerate(zip(first_run, second_run)):
        if not a.ok or not b.ok:
            same = (not a.ok and not b.ok and a.error_type == b.error_type)
        else:
            same = _identical(a, b)
        if not same:
            mismatched.append(i)
            divs.append(first_divergence(a.token_ids, b.token_ids))
    n = len(first_run)
    return SelfConsistency(n=n, n_exact=n - len(mismatched), rate=(n - len(mismatched)) / n,
                           mismatched=tuple(mismatched), divergences=tuple(divs))
