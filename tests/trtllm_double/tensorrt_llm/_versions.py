"""Which TensorRT-LLM version the contract double plays, and what differs between versions.

NOT PART OF TensorRT-LLM. The version is chosen by the environment variable
``TRTLLM_DOUBLE_VERSION`` (a version string, read when ``tensorrt_llm`` is first imported;
default ``1.2.1``). Each behaviour below follows one fact of
``pytest_engineparity/engines/data/trtllm-<series>.json`` (the key is named in the comment; the
facts give the TensorRT-LLM source file and commit). ``tests/test_trtllm_versions.py`` checks
these traits against those files, so the double cannot drift from the recorded facts.

Where a fact is null (not established from the source), the trait says what the double does
instead and why (``NOT IN FACTS``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["VERSION", "SERIES", "TRAITS", "Traits", "series_of"]

from .version import __version__ as DEFAULT_VERSION  # noqa: E402  (the literal tools read)


def series_of(version: str) -> str:
    """The facts series a version belongs to ("0.17", "1.0", "1.2", "main")."""
    m = re.match(r"^\s*(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"TRTLLM_DOUBLE_VERSION={version!r} is not a version (e.g. 1.2.1, 0.17.0.post1)")
    major, minor = int(m.group(1)), int(m.group(2))
    if major < 1:
        return "0.17"
    if (major, minor) <= (1, 1):
        return "1.0"
    if (major, minor) == (1, 2):
        return "1.2"
    return "main"


@dataclass(frozen=True)
class Traits:
    # llm_classes: tensorrt_llm._tensorrt_engine exists from 1.0 (PR #5312); in 0.17 the single
    # tensorrt_llm.LLM is the TensorRT class that builds an engine from a checkpoint
    has_tensorrt_engine_module: bool
    llm_is_pytorch: bool
    # sampling_params_fields: 0.17 has return_log_probs (bool), beam_width and no logprobs field
    sampling_has_logprobs: bool
    # sampling_params_fields.greedy: 1.0 decides greedy by top_k/top_p only (temperature ignored);
    # 1.2 adds params_imply_greedy_decoding (temperature == 0, top_k == 1 or top_p == 0.0)
    greedy_by_temperature: bool
    # logprobs_limits.pytorch_backend: 1.0 returns only the sampled token's logprob
    # (return_log_probs = bool(logprobs)); top-k from PR #7756 (1.2)
    pytorch_logprobs_top_k: bool
    # seed_per_request.pytorch_backend: not honoured by the PyTorch sampler before PR #17172
    pytorch_seeds_honoured: bool
    # stop_semantics.text_level: stop strings also matched in the detokenized text (1.x result.py)
    stop_in_text: bool
    # ignore_eos: the executor request gets end_id=-1 (1.2.0rc2 base_worker.py); main also drops
    # the stop words (stop_words=[] if ignore_eos)
    ignore_eos_drops_stop_words: bool


TABLE = {
    "0.17": Traits(has_tensorrt_engine_module=False, llm_is_pytorch=False, sampling_has_logprobs=False,
                   greedy_by_temperature=False, pytorch_logprobs_top_k=False, pytorch_seeds_honoured=False,
                   # NOT IN FACTS: result.py is not stored at the 0.17 commit; token-level only
                   stop_in_text=False, ignore_eos_drops_stop_words=False),
    "1.0": Traits(has_tensorrt_engine_module=True, llm_is_pytorch=True, sampling_has_logprobs=True,
                  greedy_by_temperature=False, pytorch_logprobs_top_k=False, pytorch_seeds_honoured=False,
                  # NOT IN FACTS for 1.0 (ignore_eos.executor_mechanics null): as 1.2.0rc2
                  stop_in_text=True, ignore_eos_drops_stop_words=False),
    "1.2": Traits(has_tensorrt_engine_module=True, llm_is_pytorch=True, sampling_has_logprobs=True,
                  greedy_by_temperature=True, pytorch_logprobs_top_k=True, pytorch_seeds_honoured=False,
                  stop_in_text=True, ignore_eos_drops_stop_words=False),
    # seed_per_request (main): "depends on its date" -- the double plays a main after PR #17172
    "main": Traits(has_tensorrt_engine_module=True, llm_is_pytorch=True, sampling_has_logprobs=True,
                   greedy_by_temperature=True, pytorch_logprobs_top_k=True, pytorch_seeds_honoured=True,
                   stop_in_text=True, ignore_eos_drops_stop_words=True),
}

VERSION: str = os.environ.get("TRTLLM_DOUBLE_VERSION") or DEFAULT_VERSION
SERIES: str = series_of(VERSION)
TRAITS: Traits = TABLE[SERIES]


def describe() -> Optional[str]:
    return f"tensorrt_llm contract double playing {VERSION} (series {SERIES})"
