"""Hostile input never gets past the parsers as anything but a clear, named error (exit 4 for
usage errors), and the parsers raise nothing else on arbitrary input (Hypothesis)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_engineparity.config import ConfigError, build_config, parse_engine_pair, parse_engines_table
from pytest_engineparity.engines.base import EngineSpecError
from pytest_engineparity.prompts import PromptFileError, load_prompts, request_from_body
from pytest_engineparity.types import GenerationRequest


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a\\u0000b"}', "NUL byte"),
    ('{"prompt": "x\\ud800"}', "invalid surrogate"),
    ('{"prompt": ""}', "empty prompt"),
    ('{"prompt": "x", "stop": ' + json.dumps(["s%d" % i for i in range(1000)]) + "}", "1000 stop strings"),
    ('{"prompt": "x", "max_tokens": 0}', "max_tokens must be an integer >= 1, got 0"),
    ('{"prompt": "x", "max_tokens": -5}', "got -5"),
    ('{"prompt": "x"} trailing', "not valid JSON"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ('{"prompt": "x", "temperature": "hot"}', "prompts.jsonl:1"),
    ('{"messages": [{"role": "user"}]}', "'messages' must be"),
    ('{"prompt": "x", "n": 3}', "only n=1"),
    ('{"prompt": "x", "functions": []}', "unsupported field(s) ['functions']"),
])
def test_hostile_jsonl_lines_are_named(tmp_path, line, message):
    p = tmp_path / "prompts.jsonl"
    p.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(PromptFileError) as ei:
        load_prompts(p)
    assert message in str(ei.value) and "prompts.jsonl:1" in str(ei.value)


def test_bom_crlf_and_comments_are_fine(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"prompt": "a"}\r\n\r\n// note\r\n{"messages": [{"role": "user", "content": "b"}]}\r\n')
    reqs = load_prompts(p)
    assert [r.kind for r in reqs] == ["text", "chat"]


def test_one_megabyte_prompt_is_accepted_for_the_engines_to_judge():
    # the engines, not the loader, decide over-length: both must reject it alike (tested with real engines)
    req = request_from_body({"prompt": "x " * 500_000})
    assert len(req.prompt) == 1_000_000


def test_hostile_prompt_file_through_pytest_is_exit_4(pytester):
    pytester.makefile(".jsonl", traffic='{"prompt": "ok"}\n{"prompt": "a\\u0000b"}\n')
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--engine-pair=hf,hf", "--parity-prompts=traffic.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --parity-prompts: *traffic.jsonl:2: *NUL byte*"])


def test_empty_sample_is_an_error(pytester):
    pytester.makefile(".jsonl", traffic='{"prompt": "one"}\n{"prompt": "two"}\n')
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--engine-pair=hf,hf", "--parity-prompts=traffic.jsonl", "--parity-sample=0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *a 10% sample of 2 requests is empty*"])


@pytest.mark.parametrize("toml, message", [
    ('[engines.a]\nkind = "hf"\ncolour = "red"\n', "unknown key(s) ['colour']"),
    ('[engines.a]\nkind = "hf"\nargs = "fast"\n', "'args' must be a dict"),
    ('[engines.a]\nmodel = "m"\n', "'kind' is required"),
    ('[engines.a]\nkind = "hf"\nmodel = "m"\nbase_url = "http://x"\n', "give only one of"),
    ('[engines.a]\nkind = "hf"\nrequest_timeout = -1\n', "request_timeout"),
    ('engines = 3\n', "needs at least one [engines.NAME] table"),
    ('[engines.a\nkind="hf"', "not valid TOML"),
    ('[engines.a]\nkind = "no_such_module:Engine"\n', "[engines.a]: cannot load engine adapter 'no_such_module:Engine'"),
])
def test_bad_config_files_name_the_problem(tmp_path, toml, message):
    (tmp_path / "e.toml").write_text(toml)
    with pytest.raises(ConfigError) as ei:
        build_config({"engine_config": "e.toml"}, {}, {}, str(tmp_path))
    assert message in str(ei.value)
    assert "e.toml" in str(ei.value)  # the error names the file it came from


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.toml").write_text('[engines.a]\nkind = "hf"\nmodel = "../models/x"\ntokenizer = "tok"\n')
    cfg = build_config({"engine_config": "sub/e.toml"}, {}, {}, str(tmp_path))
    assert cfg.engines["a"].target == str((tmp_path / "models" / "x").resolve())
    assert cfg.engines["a"].tokenizer == str((tmp_path / "sub" / "tok").resolve())


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=80))
def test_engine_pair_parser_raises_only_config_errors(raw):
    try:
        parse_engine_pair(raw, {})
    except ConfigError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
body_keys = st.sampled_from(["prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
                             "stop_token_ids", "ignore_eos", "min_tokens", "logprobs", "top_logprobs", "n",
                             "truncate_prompt_tokens", "include_stop_str_in_output", "model", "extra"])


@FUZZ
@given(st.dictionaries(body_keys, json_values, max_size=6))
def test_request_body_parser_raises_only_prompt_file_errors(body):
    try:
        req = request_from_body(body)
    except PromptFileError:
        return
    assert isinstance(req, GenerationRequest)
    GenerationRequest.from_dict(req.to_dict())  # what the worker will rebuild


@FUZZ
@given(st.dictionaries(st.text(max_size=8), st.dictionaries(
    st.sampled_from(["kind", "model", "args", "env", "python", "tokenizer", "devices", "request_timeout", "x"]),
    json_values, max_size=5), max_size=3))
def test_engines_table_parser_raises_only_config_errors(table):
    try:
        parse_engines_table(table, "fuzz", __import__("pathlib").Path("."))
    except (ConfigError, EngineSpecError):
        pass


@FUZZ
@given(st.text(max_size=60))
def test_sla_parser_raises_only_config_errors(raw):
    from pytest_engineparity.checks.latency import parse_sla

    try:
        parse_sla(raw)
    except ConfigError:
        pass
