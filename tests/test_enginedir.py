"""Reading TensorRT-LLM engine directories (pytest_engineparity.engines.enginedir), no TensorRT-LLM needed.

Built on a real config.json written by trtllm-build 0.17.0.post1 (Qwen2, bf16), copied into
tests/data, and variants of it derived here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_engineparity.engines.enginedir import (
    EngineDirError,
    RankFile,
    inspect_engine_dir,
    is_engine_dir,
    load_engine_config,
)

EXAMPLE = Path(__file__).resolve().parent / "data" / "trtllm-engine-config-0.17.0.post1.json"


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def engine_dir(tmp_path: Path, config: Any = None, ranks: tuple[int, ...] = (0,), name: str = "engine",
               raw: str | None = None) -> Path:
    root = tmp_path / name
    root.mkdir()
    if raw is None:
        raw = json.dumps(config if config is not None else example())
    (root / "config.json").write_text(raw)
    for r in ranks:
        (root / f"rank{r}.engine").write_bytes(b"\0" * (1000 + r))
    return root


def test_example_config(tmp_path: Path) -> None:
    root = engine_dir(tmp_path)
    (root / "tokenizer.json").write_text("{}")
    info = inspect_engine_dir(root)
    assert info.path == str(root)
    assert (info.builder_version, info.architecture, info.dtype) == ("0.17.0.post1", "Qwen2ForCausalLM", "bfloat16")
    assert info.quantization == {"quant_algo": None, "kv_cache_quant_algo": None}
    assert (info.tp_size, info.pp_size, info.world_size) == (1, 1, 1)
    assert (info.max_input_len, info.max_seq_len, info.max_batch_size, info.max_num_tokens, info.max_beam_width) == (
        1024, 32768, 16, 32768, 1)
    assert info.plugin_config["gemm_plugin"] == "bfloat16" and info.plugin_config["paged_kv_cache"] is True
    assert info.gather_generation_logits is False and info.gather_context_logits is False
    assert info.rank_files == [RankFile(0, str(root / "rank0.engine"), 1000)]
    assert info.missing_rank_files == [] and info.complete and info.engine_bytes == 1000
    assert info.has_tokenizer
    assert json.loads(json.dumps(info.to_dict()))["quantization"]["quant_algo"] is None
    assert is_engine_dir(root)


def test_missing_rank_files_are_listed(tmp_path: Path) -> None:
    cfg = example()
    cfg["pretrained_config"]["mapping"].update({"world_size": 4, "tp_size": 2, "pp_size": 2})
    root = engine_dir(tmp_path, cfg, ranks=(0, 2))
    info = inspect_engine_dir(root)
    assert (info.tp_size, info.pp_size, info.world_size) == (2, 2, 4)
    assert [r.rank for r in info.rank_files] == [0, 2] and info.engine_bytes == 1000 + 1002
    assert info.missing_rank_files == ["rank1.engine", "rank3.engine"] and not info.complete
    assert not info.has_tokenizer


def test_quantized_engine_and_defaults(tmp_path: Path) -> None:
    cfg = example()
    cfg["pretrained_config"]["quantization"].update({"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"})
    cfg["build_config"]["gather_generation_logits"] = True
    for key in ("max_num_tokens", "max_beam_width", "plugin_config"):
        del cfg["build_config"][key]
    del cfg["pretrained_config"]["mapping"]
    del cfg["version"]
    info = inspect_engine_dir(engine_dir(tmp_path, cfg))
    assert info.quantization == {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}
    assert info.gather_generation_logits is True
    assert (info.max_num_tokens, info.max_beam_width, info.plugin_config) == (None, None, {})
    assert (info.builder_version, info.world_size) == (None, 1)


def _drop(section: str, key: str) -> Callable[[dict[str, Any]], None]:
    def edit(cfg: dict[str, Any]) -> None:
        del cfg[section][key]
    return edit


def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(cfg: dict[str, Any]) -> None:
        cfg[section][key] = value
    return edit


@pytest.mark.parametrize("edit, expected", [
    (_drop("build_config", "max_seq_len"), "missing required key(s): build_config.max_seq_len"),
    (_drop("pretrained_config", "dtype"), "missing required key(s): pretrained_config.dtype"),
    (_set("build_config", "max_input_len", None), "build_config.max_input_len"),
    (_set("build_config", "max_seq_len", "32768"),
     "build_config.max_seq_len must be a positive integer, found '32768'"),
    (_set("build_config", "max_batch_size", 0), "build_config.max_batch_size must be a positive integer, found 0"),
    (_set("pretrained_config", "architecture", 7), "pretrained_config.architecture must be a string"),
    (_set("build_config", "plugin_config", []), "build_config.plugin_config must be an object"),
    (lambda cfg: cfg["pretrained_config"]["mapping"].update({"world_size": 2}),
     "world_size is 2 but tp_size*pp_size*cp_size is 1*1*1=1"),
], ids=["no-max_seq_len", "no-dtype", "null-max_input_len", "string-limit", "zero-batch", "bad-architecture",
        "bad-plugin_config", "inconsistent-mapping"])
def test_bad_keys_name_the_file_and_key(tmp_path: Path, edit: Callable[[dict[str, Any]], None], expected: str) -> None:
    cfg = example()
    edit(cfg)
    root = engine_dir(tmp_path, cfg)
    with pytest.raises(EngineDirError) as err:
        inspect_engine_dir(root)
    assert str(root / "config.json") in str(err.value)
    assert expected in str(err.value)
    assert err.value.path == str(root / "config.json")


def test_truncated_config_gives_position(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    root = engine_dir(tmp_path, raw=text[: len(text) // 2])
    with pytest.raises(EngineDirError) as err:
        inspect_engine_dir(root)
    msg = str(err.value)
    assert msg.startswith(str(root / "config.json")) and "not valid JSON" in msg
    assert "line " in msg and "column " in msg and f"of {len(text) // 2})" in msg
    assert "truncated?" in msg
    assert not is_engine_dir(root)


def test_invalid_json_in_the_middle_is_not_called_truncated(tmp_path: Path) -> None:
    root = engine_dir(tmp_path, raw='{"version": "0.17.0", oops, "build_config": {}}')
    with pytest.raises(EngineDirError) as err:
        load_engine_config(root)
    assert "line 1 column 23 (char 22" in str(err.value) and "truncated" not in str(err.value)


@pytest.mark.parametrize("case, expected", [
    ("missing-dir", "does not exist"),
    ("file", "is not a directory"),
    ("no-config", "has no config.json: not a TensorRT-LLM engine directory"),
    ("hf-checkpoint", "has no 'pretrained_config' or 'build_config' key: not an engine directory"
                      " (this looks like a Hugging Face checkpoint config"),
    ("half-engine", "has no 'build_config' key"),
    ("array", "must hold a JSON object, found list"),
    ("section-not-object", "'build_config' must be an object, found str"),
])
def test_not_an_engine_dir(tmp_path: Path, case: str, expected: str) -> None:
    root = tmp_path / "target"
    named = root
    if case == "file":
        root.write_text("")
    elif case == "no-config":
        root.mkdir()
    elif case != "missing-dir":
        named = root / "config.json"
        content: Any = {
            "hf-checkpoint": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
            "half-engine": {"pretrained_config": example()["pretrained_config"]},
            "array": [1, 2],
            "section-not-object": {"pretrained_config": {}, "build_config": "x"},
        }[case]
        engine_dir(tmp_path, content, name="target")
    with pytest.raises(EngineDirError) as err:
        inspect_engine_dir(root)
    assert str(err.value).startswith(str(named) + ": ")
    assert expected in str(err.value)
    assert not is_engine_dir(root)
