"""Capability-aware comparison (``checks.compare``): each pair is compared with the strongest layer
both engines support, and says which layers ran and why.

The outputs are real: the reference side is greedy decoding of the embedded model with
transformers (token ids and top-k logprobs, as vLLM returns them), the text-only side is what
trtllm-serve returns for a compiled engine (text, no ids, no logprobs). The tokenizer is the
model's own.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_engineparity.checks.compare import (
    L_CHARS,
    L_CLOSENESS,
    L_IDS,
    L_RETOKENIZED,
    L_SIMILARITY,
    L_TEXT,
    EquivalencePolicy,
    Retokenizer,
    TokenSource,
    choose_retokenizer,
    compare_pair,
    render_divergence,
)
from pytest_engineparity.engines.base import Capabilities, effective_capabilities
from pytest_engineparity.types import Completion, EngineInfo, TokenLogprobs

VLLM_LIKE = Capabilities()
TEXT_ONLY = Capabilities(token_ids=False, logprobs_top_k=0, tokenize=False)
TOP1_ONLY = Capabilities(logprobs_top_k=1)
STRICT = EquivalencePolicy()  # require_logprobs_close=True, the default


@pytest.fixture(scope="module")
def model(model_dir: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    class Model:
        tokenizer = tok

        @torch.inference_mode()
        def greedy(self, prompt: str, n: int, force: dict[int, int] | None = None) -> Completion:
            """Greedy decoding with top-5 logprobs; ``force`` {position: token id} overrides a pick."""
            ids = tok(prompt)["input_ids"]
            out: list[int] = []
            lps: list[TokenLogprobs] = []
            step, past = torch.tensor([ids]), None
            for pos in range(n):
                res = lm(input_ids=step, past_key_values=past, use_cache=True)
                past = res.past_key_values
                logp = torch.log_softmax(res.logits[0, -1].float(), -1)
                pick = (force or {}).get(pos, int(logp.argmax()))
                step = torch.tensor([[pick]])
                vals, idx = logp.topk(5)
                top = {int(i): float(v) for i, v in zip(idx, vals)}
                top.setdefault(pick, float(logp[pick]))
                lps.append(TokenLogprobs(pick, float(logp[pick]), top, {t: tok.decode([t]) for t in top}))
                out.append(pick)
            return Completion(text=tok.decode(out), token_ids=out, token_texts=[tok.decode([t]) for t in out],
                              finish_reason="length", logprobs=lps)

    return Model()


def text_only(c: Completion) -> Completion:
    """What trtllm-serve sends for ``c`` from a compiled engine: the text, nothing else."""
    return Completion(text=c.text, finish_reason=c.finish_reason)


def retok(model: Any) -> Retokenizer:
    return Retokenizer(lambda s: model.tokenizer.encode(s, add_special_tokens=False), "candidate 'trtllm-serve' tokenizer")


def test_identical_text_from_a_text_only_candidate_is_an_exact_match(model: Any) -> None:
    ref = model.greedy("The capital of France is", 8)
    cand = text_only(ref)
    c = compare_pair(ref, cand, None, STRICT, ref_caps=VLLM_LIKE, cand_caps=TEXT_ONLY)
    assert c.equivalent and c.exact and c.layers == (L_TEXT,) and c.decided_by == L_TEXT
    assert c.reason == "exact match as text (candidate returns no token ids or logprobs)"
    assert not c.missing_required_logprobs
    # the failure renderer never shows identical text as NOT equivalent (issue 16, point 10)
    lines = render_divergence("q", ref, cand, c, "vllm", "trtllm-serve")
    assert lines[0].startswith("q: equivalent") and "outputs are identical as text" in "\n".join(lines)
    # with no capabilities known, the same holds: a completion without ids cannot be required to have logprobs
    bare = compare_pair(ref, cand, None, STRICT)
    assert bare.equivalent and bare.exact and bare.reason == "exact match as text (candidate returned no token ids)"


def test_text_only_fork_is_found_on_retokenized_text_and_judged_by_similarity(model: Any) -> None:
    ref = model.greedy("The capital of France is", 10)
    runner_up = sorted(ref.logprobs[3].top.items(), key=lambda kv: -kv[1])[1][0]  # a near-tie pick at token 3
    forked = model.greedy("The capital of France is", 10, force={3: runner_up})
    cand = text_only(forked)
    c = compare_pair(ref, cand, 0.93, STRICT, ref_caps=VLLM_LIKE, cand_caps=TEXT_ONLY, retokenizer=retok(model))
    assert c.layers == (L_TEXT, L_RETOKENIZED, L_SIMILARITY) and c.decided_by == L_SIMILARITY
    assert c.divergence == 3 and c.divergence_basis == "re-tokenized text"
    assert c.equivalent and not c.exact and not c.missing_required_logprobs
    assert "fork at token 3 of the re-tokenized text" in c.reason
    assert "closeness not checked (candidate returns no token ids or logprobs)" in c.reason
    # the reference's real ids line up with the re-tokenized prefix: its top-k at the fork is reported
    assert "reference ranks the candidate's" in c.reason
    assert c.layers_note.startswith("candidate returns no token ids or logprobs: closeness not checked;")
    assert "re-tokenized with the candidate 'trtllm-serve' tokenizer" in c.layers_note
    # a broken candidate's text is still failed, by the similarity
    bad = compare_pair(ref, text_only(model.greedy("Recipe for soup:", 10)), 0.31, STRICT,
                       ref_caps=VLLM_LIKE, cand_caps=TEXT_ONLY, retokenizer=retok(model))
    assert not bad.equivalent and bad.divergence == 0 and "similarity 0.31 < 0.80" in bad.reason
    assert c.to_dict()["layers"] == [L_TEXT, L_RETOKENIZED, L_SIMILARITY]


def test_without_a_tokenizer_the_fork_is_found_on_characters_and_the_fix_is_named(model: Any) -> None:
    ref = model.greedy("The capital of France is", 6)
    cand = Completion(text=ref.text[:5] + "XYZ", finish_reason="length")
    c = compare_pair(ref, cand, 0.85, STRICT, ref_caps=VLLM_LIKE, cand_caps=TEXT_ONLY)
    assert c.layers == (L_TEXT, L_CHARS, L_SIMILARITY) and c.divergence is None
    assert c.equivalent and "texts differ at character 5" in c.reason
    assert "set tokenizer in the engine spec" in c.layers_note
    # a tokenizer that fails costs only the token position, never the verdict
    broken = Retokenizer(lambda s: (_ for _ in ()).throw(RuntimeError("no /tokenize route")), "x")
    d = compare_pair(ref, cand, 0.85, STRICT, ref_caps=VLLM_LIKE, cand_caps=TEXT_ONLY, retokenizer=broken)
    assert d.equivalent and L_CHARS in d.layers and "no /tokenize route" in d.layers_note


def test_closeness_is_not_required_from_an_engine_that_cannot_return_alternatives(model: Any) -> None:
    ref = model.greedy("The capital of France is", 8)
    runner_up = sorted(ref.logprobs[2].top.items(), key=lambda kv: -kv[1])[1][0]
    cand = model.greedy("The capital of France is", 8, force={2: runner_up})
    for lp in cand.logprobs:  # only the sampled token's logprob (trtllm-serve logprobs=1)
        lp.top = {}
    strict = compare_pair(ref, cand, 0.9, STRICT, ref_caps=VLLM_LIKE, cand_caps=TOP1_ONLY)
    assert strict.equivalent and strict.layers == (L_IDS, L_SIMILARITY) and not strict.missing_required_logprobs
    assert "closeness not checked (candidate returns only the sampled token's logprob)" in strict.reason
    # without the capabilities the old rule holds: required and missing alternatives fail the pair
    blind = compare_pair(ref, cand, 0.9, STRICT)
    assert not blind.equivalent and blind.missing_required_logprobs and blind.decided_by == L_CLOSENESS


def test_closeness_narrows_to_the_top_k_both_engines_return(model: Any) -> None:
    ref = model.greedy("Once upon a time", 8)
    runner_up = sorted(ref.logprobs[1].top.items(), key=lambda kv: -kv[1])[1][0]
    cand = model.greedy("Once upon a time", 8, force={1: runner_up})
    c = compare_pair(ref, cand, 0.95, STRICT, ref_caps=VLLM_LIKE, cand_caps=Capabilities(logprobs_top_k=3))
    assert c.logprobs.top_k == 3 and L_CLOSENESS in c.layers
    assert c.layers_note == "closeness within top-3: the most both engines return"
    # a broken pick (outside the other's top-k) still fails on the ids layer, whatever the similarity
    worst = min(ref.logprobs[1].top, key=lambda t: ref.logprobs[1].top[t])
    far = next(t for t in range(5000, 6000) if t not in ref.logprobs[1].top)
    assert worst != far
    broken = model.greedy("Once upon a time", 8, force={1: far})
    b = compare_pair(ref, broken, 0.99, STRICT, ref_caps=VLLM_LIKE, cand_caps=VLLM_LIKE)
    assert not b.equivalent and b.logprobs.failures and b.decided_by == L_CLOSENESS


def test_choose_retokenizer_prefers_the_text_only_engine_and_falls_back(model: Any) -> None:
    def cannot(text: str) -> list[int]:
        raise RuntimeError("the server has no /tokenize route and the engine spec names no tokenizer")

    def can(text: str) -> list[int]:
        return model.tokenizer.encode(text, add_special_tokens=False)

    r, note = choose_retokenizer([TokenSource("reference", "vllm", can, True),
                                  TokenSource("candidate", "trtllm-serve", can, False)])
    assert r is not None and r.source == "candidate 'trtllm-serve' tokenizer" and "its own tokenizer" in note
    r, note = choose_retokenizer([TokenSource("reference", "vllm", can, True),
                                  TokenSource("candidate", "trtllm-serve", cannot, False)])
    assert r is not None and r.source == "reference 'vllm' tokenizer" and "the reference's tokenizer" in note
    r, note = choose_retokenizer([TokenSource("reference", "a", cannot, False), TokenSource("candidate", "b", cannot, False)])
    assert r is None and note.startswith("no tokenizer reachable") and "no /tokenize route" in note


def test_effective_capabilities_merge_what_the_engine_found_at_start() -> None:
    declared = Capabilities(transport="http", notes=("probed at start",))
    info = EngineInfo("openai", "m", details={"capabilities": {
        "token_ids": False, "logprobs_top_k": 1, "transport": "in-process", "bogus": 1,
        "source": "probed at start (one-token requests)", "notes": ["no token ids"]}})
    eff = effective_capabilities(declared, info)
    assert (eff.token_ids, eff.logprobs_top_k, eff.transport) == (False, 1, "http")  # static fields stay declared
    assert eff.notes == ("probed at start", "no token ids") and eff.source.startswith("probed")
    assert effective_capabilities(declared, info.to_dict()) == eff
    assert effective_capabilities(declared, None) is declared
    assert eff.lacks() == ["token ids", "top-k alternatives (only the sampled token's logprob)"]
    assert eff.to_dict()["notes"] == ["probed at start", "no token ids"]
