"""What the plugin costs next to the engines' own work. Prints ratios from one run.

    python benchmarks/plugin_cost.py overhead  [--n 256] [--engine vllm] [--engine-config F]
    python benchmarks/plugin_cost.py batching  [--n 128] [--engine vllm] [--engine-config F]
    python benchmarks/plugin_cost.py semantic  [--n 256]
    python benchmarks/plugin_cost.py all

overhead: a suite of N prompts through the plugin (pytest, pair ENGINE,ENGINE, one batch per engine,
          no noise floor) vs the same prompts sent straight to the same engine in one batched call,
          in a worker of its own: (plugin wall - engine starts) / (2 x raw generate).  Target <= 1.05.
batching: the plugin suite (declared requests: one batch) vs a naive suite whose tests build their
          request at run time (one generate call per test), N prompts, one engine pair.  Target >= 10x.
semantic: the plugin's equivalence scoring of N forked pairs (SemanticScorer + compare_pair) vs a raw
          sentence-transformers encode of the same texts + cosine.  Target <= 1.1x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOPICS = ["the ocean", "a mountain village", "bread baking", "the moon", "a lighthouse", "autumn", "trains",
          "a library", "bees", "the desert", "chess", "rain", "a violin", "volcanoes", "a bicycle", "winter"]
ASKS = ["Write two sentences about {}.", "Give three facts about {}.", "Describe {} to a child.",
        "Write a short poem about {}.", "What is interesting about {}?", "Explain {} in one paragraph.",
        "List some words related to {}.", "Tell a tiny story about {}.", "Why do people like {}?",
        "Compare {} with the city.", "Invent a name for {}.", "Summarize {} in a tweet.",
        "Ask a question about {}.", "Write a slogan about {}.", "What colour is {}?", "Describe the sound of {}."]


def prompts(n: int) -> list[str]:
    out = [a.format(t) for a in ASKS for t in TOPICS]
    return (out * (n // len(out) + 1))[:n]


def _engine_spec(engine: str, engine_config: str | None):
    from pytest_engineparity.config import build_config

    cli = {"engine_pair": f"{engine},{engine}", "engine_config": engine_config}
    cfg = build_config(cli, {}, {}, str(ROOT))
    return cfg.engine_pair[0]


def raw_generate(engine: str, engine_config: str | None, n: int, max_tokens: int) -> dict:
    """The engine alone, in its own worker: one batched call (start not counted)."""
    from pytest_engineparity.config import EMBEDDED
    from pytest_engineparity.models import embedded_model_dir
    from pytest_engineparity.types import GenerationRequest
    from pytest_engineparity.runtime.client import EngineWorker

    spec = _engine_spec(engine, engine_config)
    if spec.target == EMBEDDED:
        spec.target = str(embedded_model_dir())
    reqs = [GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=max_tokens, logprobs=5)
            for p in prompts(n)]
    w = EngineWorker(spec)
    w.start()
    try:
        t0 = time.perf_counter()
        out = w.generate(reqs)
        wall = time.perf_counter() - t0
    finally:
        w.close()
    return {"start_s": w.start_seconds, "generate_s": wall, "tokens": sum(len(c.token_ids) for c in out)}


SUITE = """
import json, pytest
from pytest_engineparity.types import GenerationRequest
PROMPTS = json.load(open({prompts_path!r}))
MODE = {mode!r}
def req(p):
    return GenerationRequest(messages=({{"role": "user", "content": p}},), max_tokens={max_tokens}, logprobs=5)
if MODE == "batched":
    @pytest.mark.migration_step("benchmark-parity")
    @pytest.mark.parametrize("r", [req(p) for p in PROMPTS])
    def test_p(engine_pair, r):
        engine_pair.run(r)
else:
    @pytest.mark.migration_step("benchmark-parity")
    @pytest.mark.parametrize("i", range(len(PROMPTS)))
    def test_p(engine_pair, i):
        engine_pair.run(req(PROMPTS[i]))  # built at run time: one call per test
"""


def plugin_suite(engine: str, engine_config: str | None, n: int, max_tokens: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        pp = Path(d) / "prompts.json"
        pp.write_text(json.dumps(prompts(n)))
        (Path(d) / "test_bench.py").write_text(SUITE.format(prompts_path=str(pp), mode=mode, max_tokens=max_tokens))
        report = Path(d) / "r.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(d) / "test_bench.py"),
               f"--engine-pair={engine},{engine}", "--parity-noise-floor=false", f"--parity-report={report}",
               "--rootdir", d]
        if engine_config:
            cmd.append(f"--engine-config={os.path.abspath(engine_config)}")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=d)
        wall = time.perf_counter() - t0
        if not report.exists():
            raise SystemExit(f"plugin run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        doc = json.loads(report.read_text())
    starts = sum(e["start_seconds"] or 0 for e in doc["engines"])
    gen = sum(b["wall_s"] for e in doc["engines"] for b in e["batches"])
    return {"wall_s": wall, "starts_s": starts, "engine_generate_s": gen, "rc": proc.returncode,
            "calls": [len(e["batches"]) for e in doc["engines"]], "single_calls": doc["summary"]["single_calls"],
            "peak_gpu_bytes": [e.get("peak_gpu_bytes") for e in doc["engines"]],
            "peak_rss_bytes": [e.get("peak_rss_bytes") for e in doc["engines"]],
            "environment": doc["environment"]}


def cmd_overhead(a: argparse.Namespace) -> dict:
    raw = raw_generate(a.engine, a.engine_config, a.n, a.max_tokens)
    plug = plugin_suite(a.engine, a.engine_config, a.n, a.max_tokens, "batched")
    ratio = (plug["wall_s"] - plug["starts_s"]) / (2 * raw["generate_s"])
    print(f"overhead, {a.n} prompts x {a.max_tokens} tokens, engine {a.engine}:")
    print(f"  raw engine: start {raw['start_s']:.1f} s, one batched generate {raw['generate_s']:.2f} s "
          f"({raw['tokens'] / raw['generate_s']:.0f} tok/s)")
    print(f"  plugin (pair {a.engine},{a.engine}): wall {plug['wall_s']:.2f} s, engine starts {plug['starts_s']:.1f} s, "
          f"engine generate {plug['engine_generate_s']:.2f} s, generate calls per engine {plug['calls']}")
    print(f"  ratio (plugin wall - starts) / (2 x raw generate) = {ratio:.3f}   (target <= 1.05)")
    return {"raw": raw, "plugin": {k: v for k, v in plug.items() if k != "environment"}, "ratio": ratio}


def cmd_batching(a: argparse.Namespace) -> dict:
    b = plugin_suite(a.engine, a.engine_config, a.n, a.max_tokens, "batched")
    nv = plugin_suite(a.engine, a.engine_config, a.n, a.max_tokens, "naive")
    gain = (nv["wall_s"] - nv["starts_s"]) / (b["wall_s"] - b["starts_s"])
    print(f"batching, {a.n} prompts x {a.max_tokens} tokens, pair {a.engine},{a.engine}:")
    print(f"  plugin suite (one batch per engine): {b['wall_s'] - b['starts_s']:.2f} s after starts, calls {b['calls']}")
    print(f"  naive suite (one call per test):     {nv['wall_s'] - nv['starts_s']:.2f} s after starts, calls {nv['calls']}")
    print(f"  gain = {gain:.1f}x   (target >= 10x)")
    return {"batched": {k: v for k, v in b.items() if k != "environment"},
            "naive": {k: v for k, v in nv.items() if k != "environment"}, "gain": gain}


def cmd_semantic(a: argparse.Namespace) -> dict:
    import numpy as np

    from pytest_engineparity.checks.compare import EquivalencePolicy, compare_pair
    from pytest_engineparity.checks.semantic import SemanticScorer
    from pytest_engineparity.types import Completion

    ps = prompts(a.n)
    pairs = [(f"{p} Here is one answer about it, number {i}.", f"{p} A different answer, variant {i}.")
             for i, p in enumerate(ps)]
    scorer = SemanticScorer()
    model = scorer.model  # load once, outside both timings
    model.encode(["warm up"], normalize_embeddings=True)
    comps = [(Completion(text=x, token_ids=[1, 2]), Completion(text=y, token_ids=[1, 3])) for x, y in pairs]
    t0 = time.perf_counter()
    sims = scorer.similarities(pairs)
    for (r, c), s in zip(comps, sims):
        compare_pair(r, c, s, EquivalencePolicy())
    plugin_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    texts = [t for pr in pairs for t in pr]
    emb = model.encode(texts, normalize_embeddings=True, batch_size=64)
    raw_sims = (emb[0::2] * emb[1::2]).sum(axis=1)
    raw_s = time.perf_counter() - t0
    assert np.allclose(raw_sims, sims, atol=1e-4)
    print(f"semantic, {a.n} forked pairs: plugin {plugin_s:.2f} s, raw encode+cosine {raw_s:.2f} s, "
          f"ratio {plugin_s / raw_s:.3f}   (target <= 1.1)")
    return {"plugin_s": plugin_s, "raw_s": raw_s, "ratio": plugin_s / raw_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["overhead", "batching", "semantic", "all"])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--engine", default="vllm", help="engine kind or a name from --engine-config")
    ap.add_argument("--engine-config", default=None)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    a = ap.parse_args()
    results = {}
    for what, n in (("overhead", 256), ("batching", 128), ("semantic", 256)):
        if a.what in (what, "all"):
            ns = argparse.Namespace(**{**vars(a), "n": a.n or n})
            results[what] = {"overhead": cmd_overhead, "batching": cmd_batching, "semantic": cmd_semantic}[what](ns)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
