"""Read a TensorRT-LLM engine directory without TensorRT-LLM.

``trtllm-build`` writes ``config.json`` (rank 0) plus one ``rank{r}.engine`` plan per rank. The
config is ``{"version": <tensorrt_llm that built it>, "pretrained_config": {...},
"build_config": {...}}``; a directory is an engine directory when both config keys are present
(TENSORRT_LLM.md, "Engine directory"). This module reads that file with the standard library only,
so the plugin can report an engine's build limits and catch a broken directory in the pytest
process, before any worker starts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

__all__ = [
    "CONFIG_FILE",
    "EngineDirError",
    "EngineDirInfo",
    "RankFile",
    "inspect_engine_dir",
    "is_engine_dir",
    "load_engine_config",
    "rank_file_name",
]

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")

# Keys without which the directory's limits cannot be known. Everything else has a documented
# default (mapping: one rank; quantization: none; plugin_config: empty).
_REQUIRED = {
    "pretrained_config": ("architecture", "dtype"),
    "build_config": ("max_input_len", "max_seq_len", "max_batch_size"),
}

PathLike = Union[str, "os.PathLike[str]"]


class EngineDirError(ValueError):
    """The directory is not a usable engine directory; the message names the file and the key."""

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


def rank_file_name(rank: int) -> str:
    """The plan file trtllm-build writes for ``rank``."""
    return f"rank{rank}.engine"


@dataclass(frozen=True)
class RankFile:
    """One per-rank engine plan found in the directory."""

    rank: int
    path: str
    size_bytes: int


@dataclass
class EngineDirInfo:
    """What an engine directory's ``config.json`` and file listing say about the build."""

    path: str
    builder_version: Optional[str]  # the tensorrt_llm version that built it ("version")
    architecture: str
    dtype: str
    quant_algo: Optional[str]
    kv_cache_quant_algo: Optional[str]
    tp_size: int
    pp_size: int
    world_size: int
    max_input_len: int
    max_seq_len: int
    max_batch_size: int
    max_num_tokens: Optional[int]
    max_beam_width: Optional[int]
    plugin_config: dict = field(default_factory=dict)
    gather_generation_logits: bool = False
    gather_context_logits: bool = False
    rank_files: list = field(default_factory=list)  # list[RankFile], by rank
    missing_rank_files: list = field(default_factory=list)  # file names, e.g. "rank1.engine"
    has_tokenizer: bool = False

    @property
    def quantization(self) -> dict[str, Optional[str]]:
        return {"quant_algo": self.quant_algo, "kv_cache_quant_algo": self.kv_cache_quant_algo}

    @property
    def complete(self) -> bool:
        """Every rank's plan file is present."""
        return not self.missing_rank_files

    @property
    def engine_bytes(self) -> int:
        return sum(r.size_bytes for r in self.rank_files)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quantization"] = self.quantization
        return d


def load_engine_config(path: PathLike) -> dict[str, Any]:
    """Parse ``<path>/config.json`` and check that it is an engine config (both keys present).

    Raises ``EngineDirError`` naming the directory or file for every way this can fail.
    """
    root = Path(path)
    if not root.exists():
        raise EngineDirError(root, "does not exist")
    if not root.is_dir():
        raise EngineDirError(root, "is not a directory (an engine directory holds config.json and rank*.engine)")
    cfg_path = root / CONFIG_FILE
    if not cfg_path.is_file():
        raise EngineDirError(
            root, f"has no {CONFIG_FILE}: not a TensorRT-LLM engine directory"
            " (trtllm-build writes config.json and rank0.engine)"
        )
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineDirError(cfg_path, f"cannot be read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file ends early: truncated?)" if exc.pos >= len(text.rstrip()) else ""
        raise EngineDirError(
            cfg_path, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            f" (char {exc.pos} of {len(text)}){hint}"
        ) from None
    if not isinstance(data, dict):
        raise EngineDirError(cfg_path, f"must hold a JSON object, found {type(data).__name__}")
    missing = [k for k in ("pretrained_config", "build_config") if k not in data]
    if missing:
        hf = "model_type" in data or "architectures" in data
        what = "a Hugging Face checkpoint config" if hf else "something else"
        raise EngineDirError(
            cfg_path, f"has no {' or '.join(repr(k) for k in missing)} key: not an engine directory"
            f" (this looks like {what}; an engine config has both 'pretrained_config' and 'build_config')"
        )
    for section in ("pretrained_config", "build_config"):
        if not isinstance(data[section], dict):
            raise EngineDirError(cfg_path, f"{section!r} must be an object, found {type(data[section]).__name__}")
    return data


def is_engine_dir(path: PathLike) -> bool:
    """True when ``path/config.json`` parses and has both ``pretrained_config`` and ``build_config``."""
    try:
        load_engine_config(path)
    except EngineDirError:
        return False
    return True


def inspect_engine_dir(path: PathLike) -> EngineDirInfo:
    """Read an engine directory's build facts and check which rank plan files are present."""
    root = Path(path)
    data = load_engine_config(root)
    cfg_path = root / CONFIG_FILE
    pre: dict[str, Any] = data["pretrained_config"]
    build: dict[str, Any] = data["build_config"]

    absent = [f"{section}.{key}" for section, keys in _REQUIRED.items() for key in keys
              if data[section].get(key) is None]
    if absent:
        raise EngineDirError(cfg_path, f"missing required key(s): {', '.join(absent)}")

    def integer(section: str, key: str, value: Any) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EngineDirError(cfg_path, f"{section}.{key} must be a positive integer, found {value!r}")
        return value

    def required_int(section: str, key: str) -> int:
        value = integer(section, key, data[section][key])
        assert value is not None  # checked by the "absent" test above
        return value

    def text(section: str, key: str, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, str):
            raise EngineDirError(cfg_path, f"{section}.{key} must be a string, found {value!r}")
        return value

    mapping = pre.get("mapping")
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, dict):
        raise EngineDirError(cfg_path, f"pretrained_config.mapping must be an object, found {mapping!r}")
    tp = integer("pretrained_config.mapping", "tp_size", mapping.get("tp_size")) or 1
    pp = integer("pretrained_config.mapping", "pp_size", mapping.get("pp_size")) or 1
    cp = integer("pretrained_config.mapping", "cp_size", mapping.get("cp_size")) or 1
    world = integer("pretrained_config.mapping", "world_size", mapping.get("world_size")) or tp * pp * cp
    if world != tp * pp * cp:
        raise EngineDirError(
            cfg_path, f"pretrained_config.mapping.world_size is {world} but tp_size*pp_size*cp_size"
            f" is {tp}*{pp}*{cp}={tp * pp * cp}"
        )

    quant = pre.get("quantization")
    quant = {} if quant is None else quant
    if not isinstance(quant, dict):
        raise EngineDirError(cfg_path, f"pretrained_config.quantization must be an object, found {quant!r}")
    plugin = build.get("plugin_config")
    plugin = {} if plugin is None else plugin
    if not isinstance(plugin, dict):
        raise EngineDirError(cfg_path, f"build_config.plugin_config must be an object, found {plugin!r}")

    rank_files: list[RankFile] = []
    missing: list[str] = []
    for r in range(world):
        f = root / rank_file_name(r)
        if f.is_file():
            rank_files.append(RankFile(r, str(f), f.stat().st_size))
        else:
            missing.append(f.name)

    version = data.get("version")
    return EngineDirInfo(
        path=str(root),
        builder_version=str(version) if version is not None else None,
        architecture=text("pretrained_config", "architecture", pre["architecture"]) or "",
        dtype=text("pretrained_config", "dtype", pre["dtype"]) or "",
        quant_algo=text("pretrained_config.quantization", "quant_algo", quant.get("quant_algo")),
        kv_cache_quant_algo=text("pretrained_config.quantization", "kv_cache_quant_algo",
                                 quant.get("kv_cache_quant_algo")),
        tp_size=tp,
        pp_size=pp,
        world_size=world,
        max_input_len=required_int("build_config", "max_input_len"),
        max_seq_len=required_int("build_config", "max_seq_len"),
        max_batch_size=required_int("build_config", "max_batch_size"),
        max_num_tokens=integer("build_config", "max_num_tokens", build.get("max_num_tokens")),
        max_beam_width=integer("build_config", "max_beam_width", build.get("max_beam_width")),
        plugin_config=dict(plugin),
        gather_generation_logits=bool(build.get("gather_generation_logits", False)),
        gather_context_logits=bool(build.get("gather_context_logits", False)),
        rank_files=rank_files,
        missing_rank_files=missing,
        has_tokenizer=any((root / name).is_file() for name in TOKENIZER_FILES),
    )
