"""GPU placement (CPU-only): devices parsing, the overlap rule, tensor parallelism vs GPUs and vs
the engine dir's tp_size, and concurrent batches on disjoint devices."""

import json
import threading
import time
from pathlib import Path

import pytest

from pytest_engineparity.config import ParityConfig
from pytest_engineparity.engines.base import EngineSpec, EngineSpecError
from pytest_engineparity.runtime.placement import check_placement, parse_devices, schedule
from pytest_engineparity.session import ParitySession

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("value, expected", [(None, None), ([0, 1], [0, 1]), ("2, 3", [2, 3]), ((4,), [4])])
def test_parse_devices(value, expected):
    assert parse_devices(value) == expected


@pytest.mark.parametrize("value, message", [
    ("0,x", "not a comma-separated list"), ([0, 0], "listed twice"), ([-1], "not a GPU index"),
    ([True], "not a GPU index"), ([], "empty"), (3, "expected a list"),
])
def test_bad_devices_are_named(value, message):
    with pytest.raises(EngineSpecError, match=message):
        parse_devices(value)


def spec(devices=None, tp=None, name="e"):
    return EngineSpec(kind="hf", target="/m", name=name, devices=devices,
                      args={} if tp is None else {"tensor_parallel_size": tp})


def test_overlap_rule():
    assert schedule(spec([0]), spec([1])) == "concurrent"
    assert schedule(spec([0, 1]), spec([2, 3])) == "concurrent"
    assert schedule(spec([0, 1]), spec([1, 2])) == "sequential"
    assert schedule(spec(None), spec([1])) == "sequential"


def test_tensor_parallel_needs_enough_gpus():
    check_placement(spec([0, 1], tp=2), visible=2)
    with pytest.raises(EngineSpecError, match=r"tensor parallelism 2 needs 2 GPUs, but it has its devices \[0\]"):
        check_placement(spec([0], tp=2), visible=8)
    with pytest.raises(EngineSpecError, match="needs 4 GPUs, but it has 1 visible GPU"):
        check_placement(spec(None, tp=4), visible=1)
    with pytest.raises(EngineSpecError, match=r"GPU\(s\) \[3\] do not exist \(2 visible\)"):
        check_placement(spec([3]), visible=2)
    with pytest.raises(EngineSpecError, match="tensor_parallel_size must be an integer"):
        check_placement(spec(tp=0), visible=None)


def test_tp_must_match_the_engine_dir(tmp_path):
    eng = tmp_path / "engine"
    eng.mkdir()
    cfg = json.loads((DATA / "trtllm-engine-config-0.17.0.post1.json").read_text())
    cfg["pretrained_config"]["mapping"].update(tp_size=2, world_size=2)
    (eng / "config.json").write_text(json.dumps(cfg))
    for r in range(2):
        (eng / f"rank{r}.engine").write_bytes(b"\0")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (eng / f).write_text("{}")
    from pytest_engineparity.engines.trtllm import TRTLLMEngine

    with pytest.raises(EngineSpecError, match="tensor_parallel_size=1 but the engine dir was built with tp_size=2"):
        TRTLLMEngine.validate(EngineSpec(kind="trtllm", target=str(eng), args={"tensor_parallel_size": 1}))
    TRTLLMEngine.validate(EngineSpec(kind="trtllm", target=str(eng), args={"tensor_parallel_size": 2}))


class _SlowHandle:
    """Stands in for an engine handle's generate(): only the scheduling is under test here."""

    def __init__(self, role, spec):
        self.role, self.spec, self.threads = role, spec, []

    def generate(self, reqs, label=""):
        self.threads.append(threading.current_thread().name)
        time.sleep(0.5)
        return []


@pytest.mark.parametrize("devices, expected, max_wall", [(([0], [1]), "concurrent", 0.9), (([0], [0]), "sequential", 2.0)])
def test_session_runs_disjoint_engines_at_the_same_time(devices, expected, max_wall):
    ref, cand = spec(devices[0], name="ref"), spec(devices[1], name="cand")
    s = ParitySession(ParityConfig(engine_pair=(ref, cand)))
    s.reference, s.candidate = _SlowHandle("reference", ref), _SlowHandle("candidate", cand)
    t0 = time.monotonic()
    s._both(lambda h: h.generate([]))
    wall = time.monotonic() - t0
    assert s.schedule == expected
    if expected == "concurrent":
        assert wall < max_wall
    else:
        assert wall >= 1.0
