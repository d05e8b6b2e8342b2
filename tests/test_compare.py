"""Unit tests for pytest_engineparity.checks.compare: no engine, no model, recorded-looking data."""

from __future__ import annotations

import re
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_engineparity.checks.compare import (
    EquivalencePolicy,
    PairComparison,
    check_logprobs_close,
    compare_pair,
    first_divergence,
    render_divergence,
    self_consistency,
)
from pytest_engineparity.types import Completion, TokenLogprobs

# --------------------------------------------------------------------------------------------
# recorded-looking data: a small vocabulary and a builder

_IDS: dict[str, int] = {}


def tid(text: str) -> int:
    """A stable token id per distinct text (like a tokenizer would give)."""
    return _IDS.setdefault(text, 1000 + len(_IDS))


def completion(steps: list[tuple[str, dict[str, float]]], with_texts: bool = True,
               finish_reason: str = "stop") -> Completion:
    """Build a Completion from (chosen token text, {alternative text: logprob}) per position.

    The chosen token must appear among the alternatives (it carries its own logprob there).
    """
    ids, texts, lps = [], [], []
    for chosen, top in steps:
        assert chosen in top, chosen
        i = tid(chosen)
        ids.append(i)
        texts.append(chosen)
        lps.append(TokenLogprobs(token_id=i, logprob=top[chosen],
                                 top={tid(t): v for t, v in top.items()},
                                 decoded={tid(t): t for t in top}))
    return Completion(text="".join(texts), token_ids=ids, token_texts=texts if with_texts else None,
                      finish_reason=finish_reason, logprobs=lps)


PREFIX = ["Photos", "ynthesis", " is", " the", " process", " by", " which", " green", " plants",
          ",", " algae", ",", " and", " some", " bacteria", " convert", " light", " into",
          " chemical", " energy", ",", " using", " sunlight"]
assert len(PREFIX) == 23
FILLERS = [" of", " to", " in", " for", " with"]


def prefix_steps(shift: float) -> list[tuple[str, dict[str, float]]]:
    """The common prefix: confident tokens; ``shift`` models bf16 noise in the logprob."""
    steps = []
    for j, t in enumerate(PREFIX):
        own = -0.05 - 0.01 * (j % 3) + shift
        alts = {f: -3.0 - k for k, f in enumerate(FILLERS) if f != t}
        steps.append((t, {t: own, **dict(list(alts.items())[:4])}))
    return steps


def near_tie_pair() -> tuple[Completion, Completion]:
    """Two correct engines forking on a near tie at token 23 (as observed on GPU at bf16)."""
    ref = completion(prefix_steps(0.0) + [
        (" as", {" as": -0.69, " and": -0.71, " to": -2.3, " in": -3.1, " from": -3.5}),
        (" a", {" a": -0.1, " the": -2.5, " their": -3.0, " an": -4.0, " its": -4.2}),
        (" source", {" source": -0.2, " form": -1.9, " means": -2.8, " kind": -4.0, " way": -4.5}),
        (" of", {" of": -0.01, " for": -5.0, " to": -6.0, " in": -6.5, " from": -7.0}),
        (" energy", {" energy": -0.05, " power": -3.2, " fuel": -4.0, " light": -5.0, " heat": -5.5}),
        (".", {".": -0.3, ",": -1.5, " to": -2.0, " and": -3.0, " for": -3.3}),
    ])
    cand = completion(prefix_steps(0.012) + [
        (" and", {" and": -0.68, " as": -0.72, " to": -2.2, " in": -3.0, " from": -3.6}),
        # after the fork the contexts differ: these tokens are not in the reference's top-k at
        # the same index, and must not be held against the candidate
        (" chlorophyll", {" chlorophyll": -0.4, " water": -1.2, " carbon": -2.0, " the": -2.9, " other": -3.5}),
        (".", {".": -0.2, ",": -1.9, " to": -2.1, " in": -3.4, " pigments": -3.8}),
    ])
    return ref, cand


def broken_pair() -> tuple[Completion, Completion]:
    """Candidate with perturbed weights: at token 2 it picks ' the', which the reference ranks
    nowhere near its top-5."""
    ref = completion(prefix_steps(0.0)[:2] + [
        (" is", {" is": -0.02, " was": -4.5, " occurs": -5.0, " happens": -6.0, ",": -6.2}),
        (" the", {" the": -0.03, " a": -3.6, " how": -5.0, " when": -5.5, " an": -6.0}),
        (" process", {" process": -0.1, " way": -2.6, " method": -3.5, " means": -4.0, " mechanism": -4.4}),
    ])
    cand = completion(prefix_steps(0.3)[:2] + [
        (" the", {" the": -1.1, " is": -1.3, " of": -1.6, " and": -2.0, ",": -2.2}),
        (" the", {" the": -0.9, " process": -1.5, " a": -2.0, " of": -2.4, " is": -2.8}),
        (" process", {" process": -0.7, " way": -1.6, " the": -2.0, " method": -2.9, " means": -3.3}),
    ])
    return ref, cand


def plain(text_tokens: list[str], error: Optional[str] = None, error_type: Optional[str] = None) -> Completion:
    if error is not None:
        return Completion.failed(error, error_type or "ValueError")
    return Completion(text="".join(text_tokens), token_ids=[tid(t) for t in text_tokens],
                      token_texts=list(text_tokens), finish_reason="stop")


# --------------------------------------------------------------------------------------------
# first_divergence


@pytest.mark.parametrize("a, b, expected", [
    ([1, 2, 3], [1, 2, 3], None),
    ([], [], None),
    ([5, 2], [1, 2], 0),
    ([1, 2, 3], [1, 9, 3], 1),
    ([1, 2], [1, 2, 3], 2),  # length difference counts at the shorter length
    ([1, 2, 3, 4], [1, 2], 2),
    ([], [7], 0),
])
def test_first_divergence_examples(a: list[int], b: list[int], expected: Optional[int]) -> None:
    assert first_divergence(a, b) == expected


@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_first_divergence_properties(a: list[int], b: list[int]) -> None:
    d = first_divergence(a, b)
    if d is None:
        assert a == b
    else:
        assert a != b
        assert a[:d] == b[:d]
        assert d == min(len(a), len(b)) or a[d] != b[d]
    assert first_divergence(b, a) == d


# --------------------------------------------------------------------------------------------
# check_logprobs_close


def test_near_tie_fork_is_close() -> None:
    ref, cand = near_tie_pair()
    lp = check_logprobs_close(ref, cand, top_k=5)
    assert lp.available and lp.ok, lp.reason
    assert lp.divergence == 23
    assert lp.positions_checked == 24  # tokens 0..23: the fork itself, nothing after it
    assert lp.failures == ()
    assert lp.fork is not None and lp.fork.near_tie
    assert lp.fork.ref_gap == pytest.approx(0.02)
    assert lp.fork.cand_gap == pytest.approx(0.04)
    assert lp.max_abs_logprob_diff == pytest.approx(0.012)
    assert lp.reason == "near-tie fork at token 23"


def test_tokens_after_the_fork_are_not_compared() -> None:
    ref, cand = near_tie_pair()
    # precondition: the candidate's token 24 is absent from the reference's top-k at index 24
    assert cand.token_ids[24] not in ref.logprobs[24].top  # type: ignore[index]
    assert check_logprobs_close(ref, cand, top_k=5).ok


def test_top_k_narrower_than_the_tie_fails() -> None:
    ref, cand = near_tie_pair()
    lp = check_logprobs_close(ref, cand, top_k=1)  # ' and' is 2nd in the reference
    assert lp.available and not lp.ok
    assert {(f.position, f.chosen_by, f.missing_from) for f in lp.failures} == {
        (23, "candidate", "reference"), (23, "reference", "candidate")}
    assert lp.fork is not None and not lp.fork.near_tie


def test_broken_candidate_fails_at_token_2() -> None:
    ref, cand = broken_pair()
    lp = check_logprobs_close(ref, cand, top_k=5)
    assert lp.available and not lp.ok
    assert lp.divergence == 2 and lp.positions_checked == 3
    miss = lp.failures[0]
    assert (miss.position, miss.chosen_by, miss.missing_from, miss.token_text) == (2, "candidate", "reference", " the")
    assert miss.best_there_text == " is" and miss.best_there_logprob == pytest.approx(-0.02)
    assert miss.describe().startswith("token 2: candidate ' the' not in reference top-5")
    # the reference's ' is' IS in the candidate's top-5 (2nd): only one direction fails
    assert [f.chosen_by for f in lp.failures] == ["candidate"]
    assert lp.max_abs_logprob_diff == pytest.approx(0.3)


def test_logprobs_unavailable() -> None:
    ref, cand = near_tie_pair()
    cand.logprobs = None
    lp = check_logprobs_close(ref, cand)
    assert not lp.available and not lp.ok
    assert lp.reason == "candidate returned no logprobs"
    assert lp.divergence == 23


def test_logprobs_not_matching_token_ids_are_unavailable() -> None:
    ref, cand = near_tie_pair()
    assert ref.logprobs is not None
    ref.logprobs[3] = TokenLogprobs(token_id=ref.token_ids[3] + 1, logprob=-0.1)
    lp = check_logprobs_close(ref, cand)
    assert not lp.available
    assert "do not match its token ids at token 3" in lp.reason


def test_no_alternatives_at_the_fork_is_unavailable() -> None:
    ref, cand = near_tie_pair()
    assert cand.logprobs is not None
    cand.logprobs[23] = TokenLogprobs(token_id=cand.token_ids[23], logprob=-0.68)
    lp = check_logprobs_close(ref, cand)
    assert not lp.available
    assert "no top-k alternatives at the fork" in lp.reason


def test_one_side_ends_early() -> None:
    ref, cand = near_tie_pair()
    short = completion(prefix_steps(0.0)[:10])
    lp = check_logprobs_close(short, cand, top_k=5)
    assert lp.ok and lp.available
    assert lp.divergence == 10 and lp.positions_checked == 10
    assert lp.fork is not None and lp.fork.ref_token_id is None and not lp.fork.near_tie
    assert "reference ended at token 10" in lp.reason


def test_sampled_token_outside_own_top_k_is_reported() -> None:
    ref = completion([("A", {"A": -0.1, "B": -2.0})])
    # the candidate sampled 'C' although it is outside both engines' top-2 (wrong sampling settings)
    cand = completion([("C", {"A": -0.1, "B": -2.0, "C": -9.0})])
    lp = check_logprobs_close(ref, cand, top_k=2)
    assert not lp.ok
    assert [(f.chosen_by, f.missing_from) for f in lp.failures] == [("candidate", "reference")]


def _random_completion(draw: st.DrawFn, n: int) -> Completion:
    ids = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    lps = []
    for t in ids:
        alts = draw(st.dictionaries(st.integers(0, 4), st.floats(-8, -0.5), max_size=4))
        alts[t] = draw(st.floats(-0.4, 0.0))  # greedy: own token is the most likely
        lps.append(TokenLogprobs(t, alts[t], alts, {}))
    return Completion(text=" ".join(map(str, ids)), token_ids=ids, logprobs=lps)


@st.composite
def completion_pairs(draw: st.DrawFn) -> tuple[Completion, Completion]:
    n = draw(st.integers(1, 6))
    return _random_completion(draw, n), _random_completion(draw, draw(st.integers(1, 6)))


@settings(max_examples=150, deadline=None)
@given(completion_pairs(), st.sampled_from([None, 1, 2, 5]))
def test_logprob_check_is_symmetric(pair: tuple[Completion, Completion], k: Optional[int]) -> None:
    a, b = pair
    ab, ba = check_logprobs_close(a, b, k), check_logprobs_close(b, a, k)
    assert (ab.ok, ab.available, ab.positions_checked, ab.divergence, len(ab.failures)) == (
        ba.ok, ba.available, ba.positions_checked, ba.divergence, len(ba.failures))
    assert ab.max_abs_logprob_diff == ba.max_abs_logprob_diff
    # every failure lies at or before the first divergence
    assert all(ab.divergence is not None and f.position <= ab.divergence for f in ab.failures)
    # a completion is always close to itself
    assert check_logprobs_close(a, a, k).ok


# --------------------------------------------------------------------------------------------
# compare_pair


def test_exact_match() -> None:
    ref, _ = near_tie_pair()
    same, _ = near_tie_pair()
    c = compare_pair(ref, same, similarity=None, policy=EquivalencePolicy())
    assert c.exact and c.equivalent and c.divergence is None
    assert c.reason == "exact match"
    assert c.logprobs.max_abs_logprob_diff == 0.0


def test_gpu_style_near_tie_fork_passes() -> None:
    ref, cand = near_tie_pair()
    c = compare_pair(ref, cand, similarity=0.91, policy=EquivalencePolicy())
    assert not c.exact and c.equivalent
    assert c.divergence == 23
    assert c.reason == "near-tie fork at token 23, similarity 0.91 ≥ 0.80"
    assert isinstance(c.to_dict()["logprobs"], dict)


NO_TIE_RULE = EquivalencePolicy(tie_tolerance=None)


def test_near_tie_fork_with_unrelated_text_fails_without_the_tie_rule() -> None:
    ref, cand = near_tie_pair()
    c = compare_pair(ref, cand, similarity=0.41, policy=NO_TIE_RULE)
    assert not c.equivalent
    assert c.reason == "near-tie fork at token 23, similarity 0.41 < 0.80"


def test_numerical_tie_fork_is_equivalent_whatever_follows() -> None:
    # gaps 0.02 / 0.04 nats: each engine rates the other's pick as (almost) equally likely
    ref, cand = near_tie_pair()
    c = compare_pair(ref, cand, similarity=0.41, policy=EquivalencePolicy())
    assert c.equivalent
    assert "gaps 0.020/0.040 <= 0.30 nats: numerical tie" in c.reason
    # ... but a tighter tolerance than the gaps makes the similarity decide again
    assert not compare_pair(ref, cand, 0.41, EquivalencePolicy(tie_tolerance=0.03)).equivalent


def test_tie_rule_never_rescues_a_broken_candidate() -> None:
    ref, cand = broken_pair()
    assert not compare_pair(ref, cand, 0.41, EquivalencePolicy(tie_tolerance=10.0)).equivalent


def test_broken_candidate_fails_even_when_similar() -> None:
    ref, cand = broken_pair()
    c = compare_pair(ref, cand, similarity=0.95, policy=EquivalencePolicy())
    assert not c.equivalent
    assert c.reason.startswith("token 2: candidate ' the' not in reference top-5 "
                               "(reference: ' is' -0.02, ' the' not reported)")
    assert c.reason.endswith("similarity 0.95 ≥ 0.80")
    # without requiring logprobs, contradicting logprobs that ARE present still fail the pair
    assert not compare_pair(ref, cand, 0.95, EquivalencePolicy(require_logprobs_close=False)).equivalent


def test_missing_logprobs_follow_the_policy() -> None:
    ref, cand = near_tie_pair()
    ref.logprobs = None
    strict = compare_pair(ref, cand, 0.91, EquivalencePolicy())
    assert not strict.equivalent
    assert strict.reason == ("fork at token 23, no logprob check (reference returned no logprobs; "
                             "required), similarity 0.91 ≥ 0.80")
    lenient = compare_pair(ref, cand, 0.91, EquivalencePolicy(require_logprobs_close=False))
    assert lenient.equivalent
    assert "required" not in lenient.reason


def test_no_similarity_is_not_equivalent() -> None:
    ref, cand = near_tie_pair()
    c = compare_pair(ref, cand, None, NO_TIE_RULE)
    assert not c.equivalent and c.reason.endswith("no similarity score")


def test_similarity_shown_with_enough_digits() -> None:
    ref, cand = near_tie_pair()
    c = compare_pair(ref, cand, 0.7996, NO_TIE_RULE)
    assert not c.equivalent
    assert c.reason.endswith("similarity 0.7996 < 0.8000")
    assert compare_pair(ref, cand, 0.80, NO_TIE_RULE).equivalent  # the threshold itself passes


def test_same_tokens_different_text_is_not_exact() -> None:
    a = plain(["Hello", " world"])
    b = plain(["Hello", " world"])
    b.text = "Hello  world"  # a detokenizer difference
    c = compare_pair(a, b, 0.99, EquivalencePolicy(require_logprobs_close=False))
    assert not c.exact and c.divergence is None
    assert c.reason.startswith("same tokens, text differs")


@pytest.mark.parametrize("ref_err, cand_err, equivalent, reason", [
    (("too long", "ValueError"), ("too long!", "ValueError"), True, "both rejected (ValueError)"),
    (("too long", "ValueError"), ("bad", "http_400"), False,
     "both rejected, differently: reference ValueError vs candidate http_400"),
    (("This model's maximum context length is 2048 tokens. However, your prompt contains 2101 input tokens",
      "VLLMValidationError"),
     ("The sum of prompt length (2101) and query length (0) max_tokens (8) should not exceed max_seq_len (2048)",
      "ValueError"), True,
     "both rejected as over-length prompt (reference VLLMValidationError, candidate ValueError)"),
    (("This model's maximum context length is 2048 tokens.", "VLLMValidationError"), ("CUDA out of memory", "RuntimeError"),
     False, "both rejected, differently: reference VLLMValidationError vs candidate RuntimeError"),
    (None, ("prompt too long\n(4097 > 4096)", "http_400"), False,
     "candidate error: http_400: prompt too long (4097 > 4096)"),
    (("oom", "RuntimeError"), None, False, "reference error: RuntimeError: oom"),
])
def test_errors(ref_err: Optional[tuple[str, str]], cand_err: Optional[tuple[str, str]],
                equivalent: bool, reason: str) -> None:
    ok = plain(["fine"])
    ref = Completion.failed(*ref_err) if ref_err else ok
    cand = Completion.failed(*cand_err) if cand_err else ok
    c = compare_pair(ref, cand, None)
    assert (c.equivalent, c.reason) == (equivalent, reason)
    assert not c.exact


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="similarity_threshold"):
        EquivalencePolicy(similarity_threshold=1.5)
    with pytest.raises(ValueError, match="top_k"):
        EquivalencePolicy(top_k=0)


# --------------------------------------------------------------------------------------------
# render_divergence

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _render(ref: Completion, cand: Completion, similarity: Optional[float],
            **kw: object) -> tuple[PairComparison, list[str]]:
    c = compare_pair(ref, cand, similarity)
    return c, render_divergence("Explain photosynthesis in one sentence.", ref, cand, c, "vllm", "trtllm", **kw)  # type: ignore[arg-type]


def test_render_near_tie(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    ref, cand = near_tie_pair()
    _, lines = _render(ref, cand, 0.91)
    text = "\n".join(lines)
    assert lines[0].startswith("Explain photosynthesis in one sentence.: equivalent: near-tie fork at token 23")
    assert "prompt: Explain photosynthesis in one sentence." in text
    v = next(line for line in lines if line.lstrip().startswith("vllm   |"))
    t = next(line for line in lines if line.lstrip().startswith("trtllm |"))
    # aligned at the divergent token, common prefix collapsed to its tail
    assert v.index("[[") == t.index("[[")
    assert "…ls, algae, and some bacteria convert light into chemical energy, using sunlight"[-39:] in v
    assert "[[ as]] a source of energy." in v and "[[ and]] chlorophyll." in t
    assert "top-5 logprobs at token 23" in text
    assert "' as' -0.690*" in text and "' and' -0.710^" in text  # reference's view
    assert "' and' -0.680*" in text and "' as' -0.720^" in text  # candidate's view
    assert "gap: vllm prefers ' as' by 0.020; trtllm prefers ' and' by 0.040 -> near tie" in text
    assert "max |logprob diff| over the 23 common tokens: 0.0120" in text
    assert "similarity 0.91 ≥ 0.80 (threshold 0.80)" in text
    assert all(len(line) <= 100 for line in lines) and len(lines) <= 24
    assert not ANSI.search(text)


def test_render_broken_shows_the_miss() -> None:
    ref, cand = broken_pair()
    _, lines = _render(ref, cand, 0.62)
    text = "\n".join(lines)
    assert lines[0].startswith("Explain photosynthesis in one sentence.: NOT equivalent: token 2:")
    assert lines[1].startswith("    ")  # the long reason wraps onto an indented line
    assert "! token 2: candidate ' the' not in reference top-5" in text
    assert "' is' -0.020*" in text  # the reference's own pick
    assert "^' the' not in top-5" in text  # the candidate's pick, absent from the reference's list
    assert "gap: vllm does not report ' the'; trtllm prefers ' the' by 0.200 -> NOT a near tie" in text
    assert "similarity 0.62 < 0.80" in text


def test_render_color_honours_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, cand = near_tie_pair()
    monkeypatch.delenv("NO_COLOR", raising=False)
    _, colored = _render(ref, cand, 0.91, color=True)
    assert any("\x1b[1;32m as\x1b[0m" in line for line in colored)
    assert any("\x1b[1;31m and\x1b[0m" in line for line in colored)
    # visible width is still bounded and the markers are gone
    assert all(len(ANSI.sub("", line)) <= 100 for line in colored)
    assert not any("[[" in line for line in colored)
    monkeypatch.setenv("NO_COLOR", "1")
    _, plain_lines = _render(ref, cand, 0.91, color=True)
    assert not any(ANSI.search(line) for line in plain_lines)


def test_render_is_bounded_for_long_outputs() -> None:
    steps = [(f" w{i}", {f" w{i}": -0.1, " x": -3.0}) for i in range(1500)]
    ref = completion(steps + [(" end\n" * 50, {" end\n" * 50: -0.5, " fin": -0.6})])
    cand = completion(steps + [(" fin", {" end\n" * 50: -0.55, " fin": -0.5})] + steps)
    _, lines = _render(ref, cand, 0.85, width=80)
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert any("[[ end\\n end\\n" in line for line in lines)  # newlines shown escaped


def test_render_errors_and_charlevel_fallback() -> None:
    ok = plain(["fine"])
    c, lines = _render(ok, Completion.failed("prompt too long", "http_400"), None)
    assert "trtllm | error http_400: prompt too long" in "\n".join(lines)
    a = Completion(text="The answer is 42.", token_ids=[1, 2, 3])
    b = Completion(text="The answer is 43.", token_ids=[1, 2, 4])
    c = compare_pair(a, b, 0.97, EquivalencePolicy(require_logprobs_close=False))
    lines = render_divergence("q", a, b, c, "a", "b")
    assert "first divergence at character 15" in "\n".join(lines)
    assert any(line.endswith("The answer is 4[[2]].") for line in lines)
    assert any(line.endswith("The answer is 4[[3]].") for line in lines)


# --------------------------------------------------------------------------------------------
# self-consistency (the noise floor)


def test_self_consistency() -> None:
    ref, cand = near_tie_pair()
    again, _ = near_tie_pair()
    run1 = [ref, plain(["a", "b"]), Completion.failed("x", "ValueError"), plain(["c"])]
    run2 = [again, plain(["a", "c"]), Completion.failed("y", "ValueError"), plain(["c"])]
    sc = self_consistency(run1, run2)
    assert (sc.n, sc.n_exact, sc.rate) == (4, 3, 0.75)
    assert sc.mismatched == (1,) and sc.divergences == (1,)
    assert self_consistency([ref], [cand]).rate == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        self_consistency(run1, run2[:2])
    with pytest.raises(ValueError, match="at least one"):
        self_consistency([], [])


def test_render_one_side_ended_and_prompt_text() -> None:
    _, cand = near_tie_pair()
    short = completion(prefix_steps(0.0)[:10])
    c = compare_pair(short, cand, 0.7)
    lines = render_divergence("case-7", short, cand, c, "vllm", "trtllm", prompt="Explain photosynthesis.\nBriefly.")
    text = "\n".join(lines)
    assert lines[0] == "case-7: NOT equivalent: length differs at token 10, similarity 0.70 < 0.80"
    assert "  prompt: Explain photosynthesis.\\nBriefly." in text
    assert "green plants,[[<end: stop>]]" in text and "green plants,[[ algae]]" in text
    assert "vllm   | (ended here)" in text
