"""tensorrt_llm.SamplingParams (contract double).

Contract, "SamplingParams (tensorrt_llm.SamplingParams, keyword-only dataclass)": the fields below,
in the contract's order; ``max_tokens`` defaults to 32; greedy decoding when ``temperature``,
``top_p`` and ``top_k`` are all left None; ``end_id`` / ``pad_id`` default from the tokenizer when
None; ``ignore_eos`` is implemented as ``end_id=-1``; ``truncate_prompt_tokens`` is >= 1 and keeps
the LAST k tokens (applied in ``_double_runtime``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

__all__ = ["SamplingParams"]

# Fields the contract lists that the double does not model: using one raises NotImplementedError
# (name -> value that means "not used").
_NOT_MODELLED = {
    "n": 1,
    "best_of": None,
    "repetition_penalty": None,
    "presence_penalty": None,
    "frequency_penalty": None,
    "prompt_logprobs": None,
    "return_perf_metrics": False,
}


@dataclass(kw_only=True)
class SamplingParams:
    max_tokens: int = 32
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    stop: Optional[Union[str, list]] = None
    stop_token_ids: Optional[list] = None
    include_stop_str_in_output: bool = False
    end_id: Optional[int] = None
    pad_id: Optional[int] = None
    ignore_eos: bool = False
    min_tokens: Optional[int] = None
    repetition_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    n: int = 1
    best_of: Optional[int] = None
    logprobs: Optional[int] = None
    prompt_logprobs: Optional[int] = None
    return_perf_metrics: bool = False
    detokenize: bool = True
    add_special_tokens: bool = True
    skip_special_tokens: bool = True
    truncate_prompt_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        # contract: truncate_prompt_tokens (>=1; keeps the LAST k tokens)
        if self.truncate_prompt_tokens is not None and self.truncate_prompt_tokens < 1:
            raise ValueError(f"truncate_prompt_tokens must be >= 1, got {self.truncate_prompt_tokens}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k!r}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {self.logprobs!r}")
        for name, unused in _NOT_MODELLED.items():
            if getattr(self, name) != unused:
                raise NotImplementedError(
                    f"SamplingParams.{name}={getattr(self, name)!r} is not modelled by the tensorrt_llm"
                    " contract double"
                )

    # contract: "Greedy decoding when temperature, top_p and top_k are all left None."
    @property
    def _greedy_decoding(self) -> bool:
        return self.temperature is None and self.top_p is None and self.top_k is None

    def _setup(self, tokenizer: Any) -> None:
        """Fill the tokenizer-dependent defaults before the request is enqueued.

        contract: end_id / pad_id default from the tokenizer when None; ignore_eos is end_id=-1.
        """
        if self.ignore_eos:
            self.end_id = -1
        elif self.end_id is None:
            self.end_id = tokenizer.eos_token_id if tokenizer is not None else None
        if self.pad_id is None:
            pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
            self.pad_id = pad if pad is not None else self.end_id

    def _stop_words(self, tokenizer: Any) -> list:
        """[(stop_reason, token ids)] for stop_token_ids and stop strings.

        NOT IN CONTRACT: matching is on token ids, like TensorRT-LLM's stop words (each stop
        string tokenized without special tokens).
        """
        words: list = [(int(t), [int(t)]) for t in (self.stop_token_ids or [])]
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        for s in stops:
            if tokenizer is None:
                raise ValueError("stop strings need a tokenizer (LLM was made with skip_tokenizer_init=True)")
            ids = tokenizer.encode(s, add_special_tokens=False)
            if ids:
                words.append((s, [int(i) for i in ids]))
        return words
