"""The rendering family's logic on recorded data (no engine).

The renderings below are what the embedded SmolLM2-135M-Instruct tokenizer produced
(``apply_chat_template(..., add_generation_prompt=True)`` with its own template, with a template
that has no default system prompt, and with one that drops system messages), recorded once with
their decoded pieces. The family itself runs over a ``CheckContext`` implemented with recorded
completions (``context.py`` allows it), so what it records, raises and puts in the report section
is checked without starting an engine.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

import pytest

from pytest_engineparity.checks import FAMILIES, HOOKS, family_class
from pytest_engineparity.checks.compare import Retokenizer
from pytest_engineparity.checks.rendering import (
    CHECK_PREFLIGHT, CHECK_PROMPT, CHECK_TERMINATION, DIFFERS, SAME, UNCHECKED, Decoder, RenderingChecks,
    html_section, judge_eos, judge_prompt, preflight_requests, special_tokens_in, summarize_prompts,
    content_lengths, termination_stats, tokenizer_facts,
)
from pytest_engineparity.config import ParityConfig
from pytest_engineparity.errors import ParityMismatch
from pytest_engineparity.types import Completion, EngineInfo, GenerationRequest

# recorded with the embedded tokenizer (see the module docstring)
USER_DEFAULT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712,
                8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
USER_NO_SYSTEM = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
SYSTEM_DEFAULT = [1, 9690, 198, 2683, 359, 1733, 313, 30, 2, 198, 1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198]
SYSTEM_DROPPED = [1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198]
TEXT = [504, 3575, 282, 4649, 314]  # "The capital of France is": the tokenizer adds no BOS to text
PIECES = {1: "<|im_start|>", 2: "<|im_end|>", 28: ",", 30: ".", 47: "?", 198: "\n", 253: " a", 260: " the",
          282: " of", 308: "ol", 313: "se", 314: " is", 359: " are", 407: " H", 411: " by", 504: "The", 520: "ass",
          1733: " ter", 1780: "What", 2683: "You", 3365: " named", 3511: " Sm", 3575: " capital", 4093: "user",
          4649: " France", 5356: " helpful", 5646: " AI", 7018: " trained", 8182: " Face", 9531: "istant",
          9690: "system", 11173: " assistant", 19712: "ugging", 26843: "Hi", 34519: "LM"}
BOS = {1}
NAMES = {"reference": "vllm", "candidate": "hf"}

USER_Q = GenerationRequest(messages=[{"role": "user", "content": "What is the capital of France?"}], id="chat-q")
SYSTEM_Q = GenerationRequest(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
                             id="chat-system")
TEXT_Q = GenerationRequest(prompt="The capital of France is", id="text-q")


def dec() -> Decoder:
    d = Decoder(seen=PIECES)
    d.bos_ids = set(BOS)
    return d


DECS = {"reference": dec(), "candidate": dec()}


def comp(prompt_ids: Optional[list] = None, count: Optional[int] = None, tokens: tuple = (), finish: str = "length",
         text: str = "", error: Optional[str] = None) -> Completion:
    return Completion(text=text, token_ids=list(tokens), finish_reason=finish, error=error,
                      prompt_token_ids=list(prompt_ids) if prompt_ids is not None else None,
                      prompt_token_count=count if count is not None else (len(prompt_ids) if prompt_ids is not None else None))


def judge(req: GenerationRequest, ref: Completion, cand: Completion,
          body_len: Optional[Callable[[str], Optional[int]]] = None):
    return judge_prompt(req, {"reference": ref, "candidate": cand}, DECS, BOS, NAMES, body_len)


# -- tokenizer files -------------------------------------------------------------------------


def test_tokenizer_files_give_bos_eos_specials_and_exact_decoding(model_dir):
    facts = tokenizer_facts(model_dir)
    assert facts is not None
    assert facts.bos_ids == [1] and facts.eos_ids == [2]
    assert {0: "<|endoftext|>", 1: "<|im_start|>", 2: "<|im_end|>"}.items() <= facts.special.items()
    d = Decoder(facts)
    # byte-level BPE pieces decoded exactly (spaces, newlines), special tokens as text
    assert d.text(USER_NO_SYSTEM) == ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                                      "<|im_start|>assistant\n")
    assert [d.piece(t) for t in (253, 198, 1)] == [" a", "\n", "<|im_start|>"]
    assert d.show(10 ** 7) == "<id 10000000>"
    assert tokenizer_facts("/nonexistent/dir") is None and tokenizer_facts(None) is None


def test_decoder_falls_back_to_pieces_the_engines_returned():
    c = Completion(text="Paris.", token_ids=[4649, 30], token_texts=[" France", "."])
    d = Decoder.from_completions(None, [c])
    assert d.text([4649, 30]) == " France." and d.show(99) == "<id 99>"


# -- naming a difference (ids on both sides) --------------------------------------------------


def test_bos_doubled_on_the_candidate_is_named_and_aligned_at_the_first_difference():
    pc = judge(USER_Q, comp(USER_DEFAULT), comp([1] + USER_DEFAULT))
    assert pc.status == DIFFERS and pc.basis == "ids" and pc.position == 1
    assert pc.name.startswith("BOS doubled on the candidate")
    ref_line, cand_line = pc.lines
    assert "[37 tokens]" in ref_line and "[38 tokens]" in cand_line
    # both renderings lined up on the first differing token, decoded
    assert ref_line.index("▶") == cand_line.index("▶")
    assert ref_line.split("▶")[1].split()[0] == "'system'"
    assert cand_line.split("▶")[1].split()[0] == "'<|im_start|>'"
    assert "first difference at token 1" in pc.message()


def test_bos_added_missing_and_doubled_on_the_reference():
    assert judge(TEXT_Q, comp(TEXT), comp([1] + TEXT)).name.startswith("BOS added by the candidate")
    assert judge(TEXT_Q, comp([1] + TEXT), comp(TEXT)).name.startswith("BOS missing on the candidate")
    assert judge(USER_Q, comp([1] + USER_DEFAULT), comp(USER_DEFAULT)).name.startswith("BOS doubled on the reference")


def test_default_system_prompt_on_one_side_is_named_as_a_template_difference():
    pc = judge(USER_Q, comp(USER_DEFAULT), comp(USER_NO_SYSTEM))
    assert pc.status == DIFFERS and pc.position == 1
    assert "the reference's template adds a default system prompt" in pc.name
    assert "You are a helpful AI assistant named SmolLM" in pc.name
    flipped = judge(USER_Q, comp(USER_NO_SYSTEM), comp(USER_DEFAULT))
    assert "the candidate's template adds a default system prompt" in flipped.name


def test_system_prompt_dropped_is_named():
    pc = judge(SYSTEM_Q, comp(SYSTEM_DEFAULT), comp(SYSTEM_DROPPED))
    assert pc.name.startswith("system prompt dropped by the candidate")


def test_generation_prompt_and_retokenization_differences_are_named():
    pc = judge(USER_Q, comp(USER_NO_SYSTEM), comp(USER_NO_SYSTEM[:-3]))
    assert pc.name.startswith("chat template differs at the end (generation prompt)")
    d = dec()
    d._bytes.update({90001: b" cap", 90002: b"ital"})  # " capital" as two pieces
    split = TEXT[:1] + [90001, 90002] + TEXT[2:]
    pc = judge_prompt(TEXT_Q, {"reference": comp(TEXT), "candidate": comp(split)}, {"reference": d, "candidate": d},
                      BOS, NAMES)
    assert pc.name == "same text, tokenized differently"


def test_identical_renderings_are_the_same_prompt():
    pc = judge(USER_Q, comp(USER_DEFAULT), comp(USER_DEFAULT))
    assert (pc.status, pc.basis, pc.lines) == (SAME, "ids", [])


# -- counts only (an engine that returns no prompt ids, e.g. usage.prompt_tokens) ------------


def test_counts_only_equal_counts_are_parity_and_a_difference_is_still_named():
    assert judge(USER_Q, comp(count=37), comp(USER_DEFAULT)).status == SAME
    pc = judge(USER_Q, comp(count=37), comp([1] + USER_DEFAULT))
    assert pc.status == DIFFERS and pc.basis == "count"
    assert pc.name.startswith("BOS doubled on the candidate")
    assert "(no prompt token ids returned)" in pc.lines[0] and "'<|im_start|>' '<|im_start|>'" in pc.lines[1]
    # text: the engines' own tokenization of the prompt says how many special tokens each added
    pc = judge(TEXT_Q, comp(count=5), comp([1] + TEXT), body_len=lambda role: 5)
    assert pc.name.startswith("BOS added by the candidate")
    pc = judge(TEXT_Q, comp(count=5), comp(count=7), body_len=lambda role: 5 if role == "reference" else 6)
    assert pc.name.startswith("tokenization differs: the prompt text is 5 tokens for the reference, 6")
    pc = judge(USER_Q, comp(count=37), comp(count=16))
    assert pc.name.startswith("chat template differs: the candidate's prompt is 21 token(s) shorter")
    assert "reference 'vllm' and candidate 'hf' returned no prompt token ids" in pc.name


def test_nothing_reported_is_unchecked_never_a_pass_or_a_failure():
    pc = judge(USER_Q, comp(count=None, error="boom"), comp(USER_DEFAULT))
    assert pc.status == UNCHECKED
    assert "reference 'vllm' returned neither prompt token ids nor a prompt token count" in pc.why
    assert "rejected the request: boom" in pc.why
    res = summarize_prompts(CHECK_PROMPT, [pc], NAMES)
    assert res.verdict == "skip" and "no request could be checked" in res.detail


def test_summary_fails_on_any_difference_and_counts_each_name():
    checks = [judge(USER_Q, comp(USER_DEFAULT), comp([1] + USER_DEFAULT)),
              judge(TEXT_Q, comp(TEXT), comp([1] + TEXT)),
              judge(SYSTEM_Q, comp(SYSTEM_DEFAULT), comp(SYSTEM_DEFAULT))]
    res = summarize_prompts(CHECK_PROMPT, checks, NAMES)
    assert res.verdict == "fail"
    assert res.detail.startswith("2/3 requests were rendered differently")
    assert res.numbers["names"] == {"BOS doubled on the candidate": 1, "BOS added by the candidate": 1}
    assert res.numbers["basis"] == {"ids": 3, "count": 0}
    assert "chat-q (chat): BOS doubled on the candidate" in res.message()
    ok = summarize_prompts(CHECK_PROMPT, checks[2:], NAMES)
    assert ok.verdict == "pass" and "1/1" in ok.detail


# -- termination -----------------------------------------------------------------------------

EOS = {"reference": {2}, "candidate": {2}}


def test_eos_not_honoured_by_the_candidate_is_a_measured_difference():
    ref = comp(tokens=(504, 3575, 2), finish="stop")
    cand = comp(tokens=(504, 3575, 2, 198, 1, 4093), finish="length")
    f = judge_eos(USER_Q, ref, cand, EOS, dec().show)
    assert f is not None and (f.kind, f.token_id, f.position) == ("not-honoured", 2, 2)
    assert f.detail.startswith("EOS '<|im_end|>' not honoured by the candidate: both generated the same 3 tokens")


def test_a_stop_only_the_candidate_makes_is_an_extra_eos():
    ref = comp(tokens=(504, 3575, 198, 1, 4093), finish="length")
    cand = comp(tokens=(504, 3575, 198), finish="stop")
    f = judge_eos(USER_Q, ref, cand, {"reference": {2}, "candidate": {2, 198}}, dec().show)
    assert f is not None and f.kind == "extra-eos" and f.token_id == 198
    assert "an EOS id only the candidate has" in f.detail


@pytest.mark.parametrize("ref_tokens, cand_tokens, cand_finish, req", [
    ((504, 3575, 2), (504, 3575), "stop", USER_Q),  # same stop; the candidate leaves EOS out of its ids
    ((504, 3575, 2), (504, 3575, 4649, 30), "length", USER_Q),  # a fork at the EOS position: not an EOS-set fact
    ((504, 3575, 2), (504, 3575, 2, 198), "length", USER_Q.replace(ignore_eos=True)),  # EOS ignored on purpose
])
def test_no_eos_finding_where_nothing_about_the_eos_set_was_measured(ref_tokens, cand_tokens, cand_finish, req):
    ref = comp(tokens=ref_tokens, finish="stop")
    assert judge_eos(req, ref, comp(tokens=cand_tokens, finish=cand_finish), EOS, dec().show) is None


def test_special_tokens_in_text_unless_the_prompt_has_them():
    assert special_tokens_in("Paris.<|im_end|>", ["<|im_end|>", "</s>"]) == ["<|im_end|>"]
    assert special_tokens_in("echo <|im_end|>", ["<|im_end|>"], ["say <|im_end|>"]) == []


def pairs(n_stop: int, n_length: int, ran_on: int = 0, stopped_early: int = 0) -> list:
    """Identical pairs, then ``ran_on`` where the candidate ran to max_tokens (24) where the
    reference stopped at 8, and ``stopped_early`` the other way round."""
    out = [(comp(tokens=[5] * 8, finish="stop"), comp(tokens=[5] * 8, finish="stop")) for _ in range(n_stop)]
    out += [(comp(tokens=[5] * 24), comp(tokens=[5] * 24)) for _ in range(n_length)]
    out += [(comp(tokens=[5] * 8, finish="stop"), comp(tokens=[5] * 24)) for _ in range(ran_on)]
    out += [(comp(tokens=[5] * 24), comp(tokens=[5] * 8, finish="stop")) for _ in range(stopped_early)]
    return out


def test_identical_termination_passes_once_there_are_enough_requests():
    s = termination_stats(pairs(20, 10))
    assert (s.finish_verdict, s.length_verdict, s.verdict) == ("pass", "pass", "pass")
    assert s.length_ratio == 1.0 and s.length_ratio_ci == (1.0, 1.0)
    small = termination_stats(pairs(4, 2))  # 6 requests cannot show stop rates within 10 points
    assert small.finish_verdict == "inconclusive" and small.verdict == "inconclusive"
    assert small.finish_needed and "need about" in small.message


def test_a_candidate_that_runs_to_max_tokens_where_the_reference_stopped_fails():
    s = termination_stats(pairs(8, 10, ran_on=12), alpha_fail=0.005)
    assert (s.b, s.c) == (12, 0)
    assert s.mcnemar_p == pytest.approx(2 * 0.5 ** 12)
    assert s.finish_verdict == "fail" and s.length_verdict == "fail" and s.verdict == "fail"
    assert s.length_ratio > 1.1 and s.wilcoxon_p < 0.0025
    assert "12 only the reference stopped" in s.message


def test_each_fail_test_runs_at_half_the_alpha_share_and_symmetric_forks_do_not_fail():
    # 8 discordant one way: exact two-sided p = 0.0078, above 0.005 / 2: not shown at this alpha
    s = termination_stats(pairs(12, 10, ran_on=8), alpha_fail=0.005)
    assert s.finish_verdict != "fail"
    assert termination_stats(pairs(12, 10, ran_on=8), alpha_fail=0.05).finish_verdict == "fail"
    sym = termination_stats(pairs(12, 12, ran_on=3, stopped_early=3))
    assert sym.mcnemar_p == 1.0 and sym.verdict != "fail"


# -- the family over a recorded context -------------------------------------------------------


class View:
    def __init__(self, role: str, name: str, facts_dir: Optional[str], eos: Optional[list]):
        self.role, self.name = role, name
        self.spec = type("Spec", (), {"tokenizer": facts_dir, "target": facts_dir})()
        self.info = EngineInfo("recorded", "m", details={"eos_token_ids": eos} if eos is not None else {})
        self.capabilities = None

    def tokenize(self, text: str) -> list[int]:
        raise RuntimeError("no tokenizer in a recorded context")


class RecordedContext:
    """A CheckContext over recorded completions: requests map to (reference, candidate)."""

    def __init__(self, rows: dict, facts_dir: Optional[str] = None, eos: tuple = (None, None),
                 retokenizer: Any = None):
        self._retokenizer = retokenizer
        self.retokenizer_asked = 0
        self.cfg = ParityConfig()
        self.policy = None
        self.properties: list = []
        self.reference = View("reference", "vllm", facts_dir, eos[0])
        self.candidate = View("candidate", "hf", facts_dir, eos[1])
        self.single_engine = False
        self._rows = rows  # key -> (request, ref, cand)
        self._suite = [r for r, _, _ in rows.values()]
        self._done: dict = {"reference": {}, "candidate": {}}
        self.registered: list = []
        self.records: list = []
        self.sections: dict = {}
        self._state: dict = {}

    def engine(self, role: str) -> View:
        return self.reference if role == "reference" else self.candidate

    def register(self, requests, aux: bool = False) -> None:
        self.registered += [(r.label(), aux) for r in requests]

    def run_pending(self) -> None:
        for key, (_, ref, cand) in self._rows.items():
            self._done["reference"][key], self._done["candidate"][key] = ref, cand

    def suite_requests(self) -> list:
        return list(self._suite)

    def completions(self, role: str) -> dict:
        return self._done[role]

    def record(self, name: str, verdict: str, detail: str = "", numbers: Optional[dict] = None) -> None:
        self.records.append((name, verdict, detail, numbers or {}))

    def section(self, name: str, default: Any = None) -> Any:
        if name not in self.sections and default is not None:
            self.sections[name] = default()
        return self.sections.get(name)

    def set_section(self, name: str, value: Any) -> None:
        self.sections[name] = value

    def state(self, key: str, factory: Callable[[], Any]) -> Any:
        return self._state.setdefault(key, factory())

    def retokenizer(self) -> Any:
        self.retokenizer_asked += 1
        return self._retokenizer


def rows_of(*triples) -> dict:
    return {req.key(): (req, ref, cand) for req, ref, cand in triples}


def test_family_fails_prompt_parity_with_the_names_and_fills_its_report_section(model_dir):
    ctx = RecordedContext(rows_of(
        (USER_Q, comp(USER_DEFAULT, tokens=[504, 2], finish="stop", text="The"),
         comp([1] + USER_DEFAULT, tokens=[504, 2], finish="stop", text="The")),
        (SYSTEM_Q, comp(SYSTEM_DEFAULT), comp(SYSTEM_DROPPED)),
        (TEXT_Q, comp(TEXT), comp(TEXT))), facts_dir=model_dir)
    fam = RenderingChecks(ctx)
    with pytest.raises(ParityMismatch) as exc:
        fam.assert_prompt_parity()
    msg = str(exc.value)
    assert msg.startswith("prompt-parity: 2/3 requests were rendered differently")
    assert "chat-q (chat): BOS doubled on the candidate" in msg
    assert "chat-system (chat): system prompt dropped by the candidate" in msg
    # decoded through the tokenizer files, not the recorded pieces
    assert "'<|im_start|>' ▶ '<|im_start|>' 'system'" in msg
    name, verdict, _, numbers = ctx.records[-1]
    assert (name, verdict, numbers["differs"], numbers["same"]) == (CHECK_PROMPT, "fail", 2, 1)
    sec = ctx.sections["rendering"]
    assert sec["prompt_parity"]["verdict"] == "fail"
    json.dumps(sec)  # the section is JSON data
    page = html_section({"rendering": sec})
    assert "Prompt parity: fail" in page and "BOS doubled on the candidate" in page
    with pytest.raises(ParityMismatch, match=r"prompt rendered differently: chat-q \(chat\): BOS doubled"):
        fam.assert_prompt_rendered_alike(USER_Q)
    assert fam.assert_prompt_rendered_alike(TEXT_Q).status == SAME


def test_family_preflight_registers_auxiliary_requests():
    reqs = preflight_requests()
    assert {r.kind for r in reqs} == {"chat", "text"} and len(reqs) == 5
    assert any(m["role"] == "system" for r in reqs if r.messages for m in r.messages)
    ctx = RecordedContext(rows_of(*[(r, comp(count=9), comp(count=9)) for r in reqs]))
    ctx._suite = []  # only the pre-flight ran
    res = RenderingChecks(ctx).assert_rendering_preflight()
    assert res.verdict == "pass" and res.numbers["basis"] == {"ids": 0, "count": 5}
    assert ctx.registered == [(r.label(), True) for r in reqs]
    assert ctx.records[-1][0] == CHECK_PREFLIGHT and ctx.sections["rendering"]["preflight"]["rode_suite_batch"]


def test_preflight_at_session_start_shows_its_lines_and_the_later_check_keeps_what_it_saw():
    """The plugin calls ``preflight()`` once both engines are up: the pre-flight requests ride the
    first batch with the suite (nothing of the suite has run yet) and a mismatch is shown in full,
    up front; the suite's test later records the check from the same completions."""
    reqs = preflight_requests()
    suite_q = GenerationRequest(prompt="q", max_tokens=4, id="suite-q")
    rows = [(r, comp(count=9), comp(count=10)) for r in reqs] + [(suite_q, comp(count=3), comp(count=3))]
    ctx = RecordedContext(rows_of(*rows))
    ctx._suite = [suite_q]
    ctx._done = {"reference": {}, "candidate": {}}  # nothing ran before the pre-flight
    fam = RenderingChecks(ctx)
    lines = fam.preflight()
    assert lines[0].startswith("rendering pre-flight (5 chat and completion requests): FAIL: the engines render "
                               "prompts differently: 5/5 requests were rendered differently")
    assert len(lines) > 1 and any("prompt tokens" in ln or "candidate" in ln for ln in lines[1:])
    assert not ctx.records  # shown, not recorded: the suite's test records it
    with pytest.raises(ParityMismatch):
        fam.assert_rendering_preflight()
    assert ctx.records[-1][:2] == (CHECK_PREFLIGHT, "fail")
    # the suite had not run when the pre-flight was declared: it rode the first batch
    assert ctx.sections["rendering"]["preflight"]["rode_suite_batch"] is True
    # one engine (baseline-only mode): nothing to compare, no lines
    ctx.single_engine = True
    assert RenderingChecks(ctx).preflight() == []


def test_family_termination_fails_on_an_eos_the_candidate_does_not_honour():
    stop_q = [GenerationRequest(prompt=f"q{i}", max_tokens=24, id=f"q{i}") for i in range(30)]
    triples = []
    for i, q in enumerate(stop_q):
        ref = comp(count=3, tokens=[7] * 5 + [2], finish="stop", text="short")
        cand = (comp(count=3, tokens=[7] * 5 + [2] + [9] * 18, finish="length", text="short and on")
                if i < 12 else comp(count=3, tokens=[7] * 5 + [2], finish="stop", text="short"))
        triples.append((q, ref, cand))
    ctx = RecordedContext(rows_of(*triples), eos=([2], []))
    with pytest.raises(ParityMismatch) as exc:
        RenderingChecks(ctx).assert_termination_parity()
    msg = str(exc.value)
    assert "EOS differs on 12 request(s)" in msg and "not honoured by the candidate" in msg
    assert "declared EOS ids differ: reference [2], candidate []" in msg
    name, verdict, _, numbers = ctx.records[-1]
    assert (name, verdict) == (CHECK_TERMINATION, "fail")
    assert numbers["alpha_fail"] == ctx.cfg.alpha_per_decision and numbers["b"] == 12
    t = ctx.sections["rendering"]["termination"]
    assert t["distribution"]["candidate"]["finish_reason"] == {"length": 12, "stop": 18}
    assert t["eos"]["reference"]["observed"] == [2]
    assert "EOS ids (declared)" in html_section({"rendering": ctx.sections["rendering"]})


def test_family_termination_shared_special_tokens_are_not_a_failure():
    qs = [GenerationRequest(prompt=f"q{i}", max_tokens=24, id=f"q{i}") for i in range(30)]
    leak = "Paris.<|im_end|>"
    ctx = RecordedContext(rows_of(*[(q, comp(count=3, tokens=[7, 2], finish="stop", text=leak),
                                     comp(count=3, tokens=[7, 2], finish="stop", text=leak)) for q in qs]))
    res = RenderingChecks(ctx).assert_termination_parity()
    assert res.verdict == "shared" and "special tokens in both engines' text on 30 request(s) (shared)" in res.detail
    only_cand = RecordedContext(rows_of(*[(q, comp(count=3, tokens=[7, 2], finish="stop", text="Paris."),
                                           comp(count=3, tokens=[7, 2], finish="stop", text=leak)) for q in qs]))
    with pytest.raises(ParityMismatch, match=r"special tokens in the candidate's text only on 30"):
        RenderingChecks(only_cand).assert_termination_parity()


# -- lengths when a side returns text only (trtllm-serve over a compiled engine) ---------------
# vLLM lists the EOS id it stopped on in its ids (the family strips it); trtllm-serve returns no
# ids, and its usage.completion_tokens counts the EOS it generated: the same answer must have the
# same length, or short answers read as a longer candidate (+1 token on every EOS stop).


def embedded_retokenizer(model_dir: str) -> Retokenizer:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return Retokenizer(lambda text: tok(text, add_special_tokens=False)["input_ids"], "embedded tokenizer")


def short_answers(model_dir: str, ran_on: int = 0, usage: bool = True) -> list:
    """40 short answers (2-4 tokens, then EOS 2): the reference with its ids, the candidate text
    only, with a usage count that includes the EOS (``usage``) or none; ``ran_on`` of them where
    the candidate ran on to max_tokens (24) with a longer text."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    words = ["Paris.", "Yes.", "No.", "Blue.", "42.", "Rome.", "True.", "Cats."]
    triples = []
    for i in range(40):
        q = GenerationRequest(prompt=f"q{i}", max_tokens=24, id=f"q{i}")
        text = words[i % len(words)]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ref = Completion(text=text, token_ids=ids + [2], finish_reason="stop", prompt_token_count=3)
        if i < ran_on:
            long = (text + " And then it went on and on about nothing in particular at all") * 2
            cand = Completion(text=long, finish_reason="length", token_ids_source="none",
                              completion_token_count=24 if usage else None, prompt_token_count=3)
        else:
            cand = Completion(text=text, finish_reason="stop", token_ids_source="none",
                              completion_token_count=len(ids) + 1 if usage else None, prompt_token_count=3)
        triples.append((q, ref, cand))
    return triples


def test_a_text_only_candidate_counting_its_eos_is_not_longer_on_short_answers(model_dir):
    triples = short_answers(model_dir)
    pairs_ = [(r, c) for _, r, c in triples]
    # what the old measure saw: ids less the EOS against usage with it: a 1.4x longer candidate
    naive = termination_stats(pairs_, length=lambda role, x: (len(x.token_ids) - 1 if role == "reference"
                                                              else x.output_token_count))
    assert naive.length_verdict == "fail" and naive.length_ratio > 1.3
    ctx = RecordedContext(rows_of(*triples), eos=([2], None), retokenizer=embedded_retokenizer(model_dir))
    res = RenderingChecks(ctx).assert_termination_parity()
    assert res.verdict == "pass", res.detail
    numbers = ctx.records[-1][3]
    assert numbers["length_basis"] == {"ids": 0, "count": 40, "text": 0, "none": 0} and numbers["length_ratio"] == 1.0
    assert "40 by a text-only side's own count" in res.detail and ctx.retokenizer_asked == 0
    # no count at all (a server without usage): one tokenizer over both texts
    no_usage = RecordedContext(rows_of(*short_answers(model_dir, usage=False)), eos=([2], None),
                               retokenizer=embedded_retokenizer(model_dir))
    res = RenderingChecks(no_usage).assert_termination_parity()
    assert res.verdict == "pass" and no_usage.records[-1][3]["length_basis"]["text"] == 40
    assert no_usage.records[-1][3]["length_ratio"] == 1.0 and no_usage.retokenizer_asked == 1


def test_a_text_only_candidate_that_runs_on_still_fails(model_dir):
    for usage in (True, False):
        ctx = RecordedContext(rows_of(*short_answers(model_dir, ran_on=12, usage=usage)), eos=([2], None),
                              retokenizer=embedded_retokenizer(model_dir))
        with pytest.raises(ParityMismatch, match="12 only the reference stopped"):
            RenderingChecks(ctx).assert_termination_parity()
        assert ctx.records[-1][3]["length_ratio"] > 2


def test_pairs_with_ids_on_both_sides_never_ask_for_a_tokenizer():
    lengths, basis = content_lengths([(comp(tokens=[7, 7, 2], finish="stop"), comp(tokens=[7, 7], finish="stop"))],
                                     {"reference": {2}, "candidate": set()}, lambda: pytest.fail("not needed"))
    assert basis == {"ids": 1, "count": 0, "text": 0, "none": 0} and sorted(lengths.values()) == [2, 2]


# -- the architecture: a family is its module and one registry line ---------------------------


def test_registered_once_and_its_public_methods_reach_engine_pair_without_collisions():
    assert family_class("rendering") is RenderingChecks
    mine = {m for m in vars(RenderingChecks) if not m.startswith("_") and m not in HOOKS}
    assert {"assert_prompt_parity", "assert_prompt_rendered_alike", "assert_rendering_preflight",
            "assert_termination_parity"} <= mine
    for other in FAMILIES:
        if other != "rendering":
            assert not mine & set(vars(family_class(other))), f"method name shared with family {other!r}"
    assert RenderingChecks.section == "rendering"


def test_a_text_only_candidate_whose_last_recovered_id_was_learned_as_eos_is_not_an_extra_eos():
    """trtllm-serve on a compiled engine: ids recovered from the stream's texts leave the EOS token
    out, so '.' ends the candidate's EOS stops and is seen as its EOS id. Same text, both EOS stops:
    the same ending, no finding (measured first against the trtllm-serve stand-in: 28 such requests)."""
    ref = comp(tokens=(504, 3575, 30, 2), finish="stop", text="The capital.")
    cand = comp(tokens=(504, 3575, 30), finish="stop", text="The capital.")
    assert judge_eos(USER_Q, ref, cand, {"reference": {2}, "candidate": {2, 30}}, dec().show) is None
    other = comp(tokens=(504, 3575, 30), finish="stop", text="The capital")
    assert judge_eos(USER_Q, ref, other, {"reference": {2}, "candidate": {2, 30}}, dec().show) is not None


def test_the_summary_at_the_end_has_one_line_per_rendering_part_that_ran():
    ctx = RecordedContext(rows_of((TEXT_Q, comp(TEXT), comp(TEXT))))
    RenderingChecks(ctx).assert_prompt_parity()
    doc = {"rendering": ctx.sections["rendering"]}
    assert RenderingChecks.terminal_lines(doc) == [
        "rendering prompt parity: pass: every checked request rendered alike: 1/1 (1 by ids)"]
    assert RenderingChecks.terminal_lines({}) == []
