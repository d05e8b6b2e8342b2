"""The TensorRT engine LLM class of the contract double (NOT a TensorRT-LLM module name).

1.x exports it as ``tensorrt_llm._tensorrt_engine.LLM``; 0.17 as ``tensorrt_llm.LLM`` (facts
``llm_classes``). Contract, "Engine directory": a directory is an engine when its config.json has
both ``pretrained_config`` and ``build_config``; the build limits come from ``build_config``;
given a checkpoint and ``build_config`` it "builds" an engine. Contract, "Limits and errors":
prompt + max_tokens over the engine's max_seq_len raises the ValueError below unless chunked
prefill is on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._double_runtime import (
    _BaseLLM,
    _Limits,
    _torch_dtype,
    as_build_config,
    engine_limits,
    hf_config_from_pretrained_config,
    load_engine_weights,
)
from ._versions import TRAITS
from .llmapi import BuildConfig
from .sampling_params import SamplingParams

__all__ = ["TrtLLM"]


class TrtLLM(_BaseLLM):
    """TensorRT-engine LLM (contract: "Two LLM classes"): 1.x's tensorrt_llm._tensorrt_engine.LLM,
    0.17's tensorrt_llm.LLM."""

    _backend = "tensorrt"
    _extra_fields = frozenset({"build_config"})

    def _load_model(self, path: Path, dtype: str, kwargs: dict[str, Any]) -> tuple[Any, _Limits]:
        cfg_file = path / "config.json"
        data: dict[str, Any] = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        if "pretrained_config" in data and "build_config" in data:
            # a prebuilt engine directory: limits from its build_config
            if kwargs.get("build_config") is not None:
                raise ValueError(f"{path} is already a built engine; build_config only applies when"
                                 " building from a checkpoint")
            pre, build = data["pretrained_config"], data["build_config"]
            mapping = pre.get("mapping") or {}
            if int(mapping.get("world_size", 1)) != 1:
                raise NotImplementedError("the tensorrt_llm contract double runs one-rank engines only")
            hf_cfg = hf_config_from_pretrained_config(pre)
            model = load_engine_weights(path, hf_cfg, _torch_dtype(pre.get("dtype", "float32")))
            # NOT IN CONTRACT: gather_generation_logits at run time needs the engine built with it
            if kwargs.get("gather_generation_logits") and not build.get("gather_generation_logits"):
                raise ValueError(f"gather_generation_logits=True needs an engine built with it;"
                                 f" {cfg_file} has build_config.gather_generation_logits=false")
            return model, engine_limits(BuildConfig.from_dict(build))
        # contract: the TensorRT class builds an engine from a checkpoint given build_config
        from transformers import AutoConfig, AutoModelForCausalLM

        build_cfg = as_build_config(kwargs.get("build_config") or BuildConfig())
        if build_cfg.gather_generation_logits:
            self._gather_generation_logits = True
        hf_cfg = AutoConfig.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=_torch_dtype(dtype, hf_cfg))
        model.eval()
        return model, engine_limits(build_cfg)

    def _check_arguments(self, prompt_len: int, query_len: int, sp: SamplingParams) -> None:
        max_seq_len = self._limits.max_seq_len
        # facts overlength_error_llmapi.tensorrt_backend (unless chunked prefill is on); the prompt
        # length is printed as prompt_len / cp_size: a float
        if not self._chunked_prefill and prompt_len + query_len + sp.max_tokens > max_seq_len:
            raise ValueError(
                f"The sum of prompt length ({prompt_len / 1}) and query length ({query_len}) max_tokens"
                f" ({sp.max_tokens}) should not exceed max_seq_len ({max_seq_len})"
            )
        # facts logprobs_limits.tensorrt_backend: logprobs need gather_generation_logits
        if TRAITS.sampling_has_logprobs and sp.logprobs and not self._gather_generation_logits:
            raise ValueError(f"`sampling_params.logprobs={sp.logprobs}` requires `gather_generation_logits=True`"
                             " to be passed explicitly to the `LLM()` constructor.")
