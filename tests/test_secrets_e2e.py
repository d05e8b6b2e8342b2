"""An API key read from the environment never leaves it: a real vLLM server that requires a key
(a canary string), the openai adapter given only the *name* of the variable; afterwards no file
the run wrote (JSON report, HTML page, JUnit XML, worker logs) and nothing it printed contains
the key."""

import os
from pathlib import Path

import pytest

CANARY = "sk-canary-7f3a9c1e-do-not-leak"


@pytest.fixture(scope="module")
def keyed_server(model_dir, tmp_path_factory):
    from vllm_server import running_vllm_server

    log = tmp_path_factory.mktemp("keyed-server") / "server.log"
    with running_vllm_server(model_dir, extra_args=["--dtype", "float32", "--api-key", CANARY],
                             timeout=600, log_path=log) as url:
        yield url


@pytest.mark.slow
def test_api_key_never_reaches_reports_logs_or_output(pytester, keyed_server, monkeypatch):
    monkeypatch.setenv("EP_SERVER_KEY", CANARY)
    work_tmp = pytester.path / "tmp"
    work_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(work_tmp))  # the workers' logs land under the test dir
    pytester.makefile(".toml", engines=f"""
        [engines.server]
        kind = "openai"
        base_url = "{keyed_server}/v1"
        api_key_env = "EP_SERVER_KEY"

        [engines.local]
        kind = "hf"
    """)
    pytester.makepyfile(test_suite="""
        import pytest
        from pytest_engineparity.types import GenerationRequest as R
        pytestmark = pytest.mark.migration_step("benchmark-parity")

        @pytest.mark.parametrize("req", [R(prompt="The capital of France is", max_tokens=8),
                                         R(messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)])
        def test_close(engine_pair, req):
            engine_pair.assert_close(req)
    """)
    result = pytester.runpytest_subprocess("--engine-pair=server,local", "--engine-config=engines.toml",
                                           "--parity-report=out/r.json", "--parity-html=out/r.html",
                                           "--junitxml=out/junit.xml", "--parity-noise-floor=false",
                                           "-p", "no:cacheprovider", timeout=600)
    assert result.ret == 0, result.stdout.str()[-3000:]
    written = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("worker-") for p in written), "worker logs were not found under TMPDIR"
    assert {"r.json", "r.html", "junit.xml"} <= {p.name for p in written}
    for p in written:
        assert CANARY not in p.read_text(errors="replace"), f"the API key leaked into {p}"
    assert CANARY not in result.stdout.str() + result.stderr.str()
    # the report names the variable, so a reader knows where the key came from
    assert "EP_SERVER_KEY" in (pytester.path / "out" / "r.json").read_text()


@pytest.mark.slow
def test_wrong_key_fails_loudly_without_showing_either_key(pytester, keyed_server, monkeypatch):
    wrong = "sk-wrong-0000-canary"
    monkeypatch.setenv("EP_SERVER_KEY", wrong)
    pytester.makefile(".toml", engines=f"""
        [engines.server]
        kind = "openai"
        base_url = "{keyed_server}/v1"
        api_key_env = "EP_SERVER_KEY"
    """)
    pytester.makepyfile(test_suite="""
        import pytest
        from pytest_engineparity.types import GenerationRequest as R
        pytestmark = pytest.mark.migration_step("benchmark-parity")

        def test_close(engine_pair):
            engine_pair.assert_close(R(prompt="Hello", max_tokens=4))
    """)
    result = pytester.runpytest_subprocess("--engine-pair=server,hf", "--engine-config=engines.toml",
                                           "--parity-noise-floor=false", "-p", "no:cacheprovider", timeout=600)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret != 0
    assert "401" in out
    assert wrong not in out and CANARY not in out
