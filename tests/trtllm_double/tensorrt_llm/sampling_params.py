"""tensorrt_llm.SamplingParams (contract double).

Contract, "SamplingParams (tensorrt_llm.SamplingParams, keyword-only dataclass)": the fields below,
in the contract's order; ``max_tokens`` defaults to 32; ``end_id`` / ``pad_id`` default from the
tokenizer when None; ``truncate_prompt_tokens`` is >= 1.

Per version (``_versions``; facts ``sampling_params_fields``):

- greedy decoding: 1.0 when ``top_k`` is None or 1 and ``top_p`` is None or 0.0 (the temperature
  is ignored); 1.2 and later also when ``temperature == 0`` (``params_imply_greedy_decoding``);
- ``ignore_eos`` leaves ``end_id`` as the EOS id: the executor request gets ``end_id=-1``
  (``_double_runtime``; facts ``ignore_eos``);
- 0.17 has no ``logprobs`` field: ``return_log_probs`` (bool) and ``beam_width`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ._versions import SERIES, TRAITS

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


class _Behaviour:
    """What both field layouts share: validation, greedy rule, tokenizer-dependent defaults."""

    def _validate(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        # facts sampling_params_fields.validation: the exact text
        if self.truncate_prompt_tokens is not None and self.truncate_prompt_tokens < 1:
            raise ValueError(f"truncate_prompt_tokens must be >= 1, got {self.truncate_prompt_tokens}")
        # 1.2 validation_errors
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"require 0 <= top_p <= 1, got top_p={self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"require top_k >= 0, got top_k={self.top_k}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"require temperature >= 0, got temperature={self.temperature}")
        for name, unused in _NOT_MODELLED.items():
            if getattr(self, name, unused) != unused:
                raise NotImplementedError(
                    f"SamplingParams.{name}={getattr(self, name)!r} is not modelled by the tensorrt_llm"
                    " contract double"
                )

    @property
    def _greedy_decoding(self) -> bool:
        by_k_p = self.top_k in (None, 1) and self.top_p in (None, 0.0)
        if not TRAITS.greedy_by_temperature:
            return by_k_p  # 1.0: temperature ignored
        return ((self.temperature is None and self.top_p is None and self.top_k is None)
                or self.top_k == 1 or self.top_p == 0.0 or self.temperature == 0)

    def _setup(self, tokenizer: Any) -> None:
        """Fill the tokenizer-dependent defaults before the request is enqueued: end_id / pad_id
        from the tokenizer when None (ignore_eos does NOT touch end_id: the executor request gets
        -1)."""
        if self.end_id is None:
            self.end_id = tokenizer.eos_token_id if tokenizer is not None else None
        if self.pad_id is None:
            pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
            self.pad_id = pad if pad is not None else self.end_id

    def _stop_words(self, tokenizer: Any) -> list:
        """[(stop_reason, token ids)] for stop_token_ids and stop strings (facts stop_semantics:
        each stop string tokenized with add_special_tokens=<add_special_tokens>... the double uses
        False: a BOS inside a stop word could never match)."""
        words: list = [(int(t), [int(t)]) for t in (self.stop_token_ids or [])]
        for s in self._stop_strings():
            if tokenizer is None:
                raise ValueError("stop strings need a tokenizer (LLM was made with skip_tokenizer_init=True)")
            ids = tokenizer.encode(s, add_special_tokens=False)
            if ids:
                words.append((s, [int(i) for i in ids]))
        return words

    def _stop_strings(self) -> list:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


@dataclass(kw_only=True)
class _SamplingParams1x(_Behaviour):
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
        # facts sampling_params_fields.validation: "logprobs coerced: self.logprobs = self.logprobs
        # and int(self.logprobs)"
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {self.logprobs!r}")
        self.logprobs = self.logprobs and int(self.logprobs)
        self._validate()


@dataclass(kw_only=True)
class _SamplingParams017(_Behaviour):
    """0.17: no logprobs field; return_log_probs gives the sampled token's logprob (facts
    sampling_params_fields / logprobs_limits of 0.17)."""

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
    beam_width: int = 1
    return_log_probs: bool = False
    detokenize: bool = True
    add_special_tokens: bool = True
    skip_special_tokens: bool = True
    truncate_prompt_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        if self.beam_width != 1:
            raise NotImplementedError("beam search is not modelled by the tensorrt_llm contract double")
        self._validate()

    @property
    def logprobs(self) -> Optional[int]:  # what the executor reads: the sampled token's only
        return 1 if self.return_log_probs else None


SamplingParams: Any = _SamplingParams017 if SERIES == "0.17" else _SamplingParams1x
SamplingParams.__name__ = SamplingParams.__qualname__ = "SamplingParams"
SamplingParams.__module__ = __name__
