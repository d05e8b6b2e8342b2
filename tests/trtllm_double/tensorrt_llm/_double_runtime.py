"""The machinery behind the contract double's LLM classes. NOT part of TensorRT-LLM's API.

``_BaseLLM`` holds what the contract says both classes share ("Two LLM classes": constructor,
LlmArgs kwargs, shutdown, context manager; "generate"), and the request checks of "Limits and
errors". ``_Executor`` stands in for TensorRT-LLM's in-flight-batching executor: one background
thread that runs the Hugging Face model with transformers. Requests that arrive together are
decoded as one batch ("wave": left-padded, one forward pass per step for all of them); each
request's ``RequestOutput`` gets a snapshot after every step.

Per version (``_versions.TRAITS``, from ``engines/data/trtllm-*.json``): the executor request gets
``end_id=-1`` for ``ignore_eos`` (main also drops the stop words); stop strings are matched on
token ids (trimmed unless ``include_stop_str_in_output``) and, from 1.0, in the detokenized text
(the text is cut, the ids are not); the PyTorch backend of 1.0 returns only the sampled token's
logprob and before main ignores per-request seeds; token-id prompts are never truncated.

``CALLS`` records what code under test passed in (constructor kwargs, each request's prompt and
SamplingParams), so tests can check the adapter's parameter mapping.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ._versions import TRAITS
from .executor.result import CompletionOutput, Logprob, RequestOutput
from .executor.utils import RequestError
from .llmapi import BuildConfig, KvCacheConfig
from .sampling_params import SamplingParams

logger = logging.getLogger("tensorrt_llm")

# Every call into the double, in order: ("LLM", {...}), ("generate_async", {...}), ("shutdown", {...}).
CALLS: list[tuple[str, dict[str, Any]]] = []

# contract "Two LLM classes": kwargs are fields of LlmArgs, e.g. max_batch_size, max_num_tokens,
# max_seq_len, kv_cache_config, gather_generation_logits, return_perf_metrics. The double accepts
# exactly those, plus `backend` (contract: default backend="pytorch") and
# `enable_chunked_prefill` (contract "Limits and errors": "unless chunked prefill is on"; the field
# name is TensorRT-LLM's).
LLM_ARGS_FIELDS = frozenset({
    "max_batch_size", "max_num_tokens", "max_seq_len", "kv_cache_config",
    "gather_generation_logits", "return_perf_metrics", "enable_chunked_prefill", "backend",
})

# pretrained_config architecture -> transformers model_type (NOT IN CONTRACT: the double's loader)
_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "MistralForCausalLM": "mistral"}

_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}

_ids = itertools.count(1)

# facts seed_per_request: a sampler that ignores per-request seeds draws from one process-wide
# generator (seeded once from the OS), so a seed does not reproduce a sample
_SHARED_RNG: Any = None

WAVE_GATHER_S = 0.02  # how long the executor waits for more requests before starting a wave


@dataclass
class _Limits:
    max_seq_len: int
    max_input_len: Optional[int]
    max_num_tokens: Optional[int]
    max_batch_size: int


@dataclass
class _Request:
    out: RequestOutput
    params: SamplingParams
    prompt_ids: list
    end_id: int = -1  # what the executor request gets: -1 when ignore_eos (facts ignore_eos)
    stop_words: list = field(default_factory=list)  # token-level [(reason, ids)]
    stop_strings: list = field(default_factory=list)  # text-level (1.x result.py)
    logprob_shape: Optional[str] = None  # None, "topk" ({id: Logprob}) or "sampled" (float)
    honour_seed: bool = True
    max_new: int = 0  # after clamping
    generator: Any = None
    generated: list = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    cumulative: float = 0.0


class _BaseLLM:
    """Shared constructor and generate path of both LLM classes (contract: "Two LLM classes")."""

    _backend = "pytorch"  # overridden by the TensorRT class
    _extra_fields: frozenset = frozenset()

    def __init__(self, model: Union[str, os.PathLike], tokenizer: Optional[Union[str, os.PathLike]] = None,
                 tokenizer_mode: str = "auto", skip_tokenizer_init: bool = False,
                 trust_remote_code: bool = False, tensor_parallel_size: int = 1, dtype: str = "auto",
                 revision: Optional[str] = None, tokenizer_revision: Optional[str] = None,
                 **kwargs: Any) -> None:
        CALLS.append(("LLM", {"class": f"{type(self).__module__}.{type(self).__qualname__}",
                              "model": str(model), "tokenizer": None if tokenizer is None else str(tokenizer),
                              "dtype": dtype, "tensor_parallel_size": tensor_parallel_size, **kwargs}))
        self._executor: Optional[_Executor] = None
        # contract: an unknown kwarg raises ValueError("LLM got invalid argument: <key>")
        for key in kwargs:
            if key not in LLM_ARGS_FIELDS and key not in self._extra_fields:
                if key == "build_config":
                    # contract: passing build_config to the PyTorch class raises ValueError that
                    # points to tensorrt_llm._tensorrt_engine.LLM
                    raise ValueError(
                        "build_config is a TensorRT-backend argument; the PyTorch-backend LLM does not"
                        " accept it: use `from tensorrt_llm._tensorrt_engine import LLM` to build or load"
                        " a TensorRT engine"
                    )
                raise ValueError(f"LLM got invalid argument: {key}")
        backend = kwargs.get("backend")
        if backend is not None and backend != self._backend:  # contract: default backend="pytorch"
            raise ValueError(f"backend={backend!r} does not match this LLM class ({self._backend!r} backend):"
                             " the TensorRT engine class is tensorrt_llm._tensorrt_engine.LLM")
        kv = kwargs.get("kv_cache_config")
        if kv is not None and not isinstance(kv, KvCacheConfig):
            raise TypeError(f"kv_cache_config must be a KvCacheConfig, got {type(kv).__name__}")
        if tensor_parallel_size != 1:
            raise NotImplementedError("the tensorrt_llm contract double runs one rank only")
        self._args = dict(kwargs)
        self._model_path = Path(model)
        self._chunked_prefill = bool(kwargs.get("enable_chunked_prefill", False))
        self._gather_generation_logits = bool(kwargs.get("gather_generation_logits", False))
        import torch  # noqa: F401  (the double's backend)

        hf_model, limits = self._load_model(self._model_path, dtype, kwargs)
        self._limits = limits
        self.tokenizer = None
        if not skip_tokenizer_init:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or model))
        self._executor = _Executor(hf_model, limits.max_batch_size)

    # -- subclass hook -----------------------------------------------------------------------
    def _load_model(self, path: Path, dtype: str, kwargs: dict[str, Any]) -> tuple[Any, _Limits]:
        """contract: the PyTorch class takes a Hugging Face checkpoint dir."""
        from transformers import AutoConfig, AutoModelForCausalLM

        if (path / "config.json").is_file():
            cfg = json.loads((path / "config.json").read_text())
            if "pretrained_config" in cfg and "build_config" in cfg:
                raise ValueError(f"{path} is a TensorRT engine directory: load it with"
                                 " tensorrt_llm._tensorrt_engine.LLM")
        hf_cfg = AutoConfig.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=_torch_dtype(dtype, hf_cfg))
        model.eval()
        limits = _Limits(
            max_seq_len=int(kwargs.get("max_seq_len") or hf_cfg.max_position_embeddings),
            max_input_len=None,
            max_num_tokens=int(kwargs.get("max_num_tokens") or 8192),
            max_batch_size=int(kwargs.get("max_batch_size") or 2048),
        )
        return model, limits

    # -- contract "generate" -----------------------------------------------------------------
    def generate(self, inputs: Any, sampling_params: Optional[SamplingParams] = None,
                 use_tqdm: bool = True, lora_request: Any = None) -> Any:
        """A single prompt (str or list of token ids) returns one RequestOutput; a list returns a list."""
        if lora_request is not None:
            raise NotImplementedError("lora_request is not modelled by the contract double")
        single = isinstance(inputs, str) or (isinstance(inputs, list) and all(isinstance(t, int) for t in inputs)
                                             and len(inputs) > 0)
        batch = [inputs] if single else list(inputs)
        futures = [self.generate_async(p, sampling_params) for p in batch]
        results = [f.result() for f in futures]
        return results[0] if single else results

    def generate_async(self, inputs: Any, sampling_params: Optional[SamplingParams] = None,
                       lora_request: Any = None, streaming: bool = False) -> RequestOutput:
        """Enqueue one prompt; ``async for`` over the result when ``streaming=True``."""
        if self._executor is None:
            raise RuntimeError("LLM has been shut down")
        if lora_request is not None:
            raise NotImplementedError("lora_request is not modelled by the contract double")
        sp = sampling_params if sampling_params is not None else SamplingParams()
        CALLS.append(("generate_async", {"inputs": inputs, "sampling_params": sp, "streaming": streaming}))
        if isinstance(inputs, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer (LLM was made with skip_tokenizer_init=True)")
            prompt: Optional[str] = inputs
            ids = self._encode_prompt(inputs, sp)
        elif isinstance(inputs, (list, tuple)) and all(isinstance(t, int) for t in inputs):
            # facts truncate_prompt_tokens: token-id prompts are used as given (never truncated)
            prompt, ids = None, [int(t) for t in inputs]
        else:
            raise TypeError(f"prompt must be a str or a list of token ids, got {type(inputs).__name__}")
        self._check_arguments(len(ids), 0, sp)
        sp._setup(self.tokenizer)
        out = RequestOutput(next(_ids), prompt, ids, streaming)
        drop_words = sp.ignore_eos and TRAITS.ignore_eos_drops_stop_words
        want = bool(sp.logprobs)  # logprobs=0 is falsy: none (facts serve_logprobs_validation)
        shape = None
        if want:
            shape = "topk" if (self._backend == "tensorrt" or TRAITS.pytorch_logprobs_top_k) else "sampled"
        elif getattr(sp, "_return_log_probs", False):
            # facts serve_logprobs_validation: trtllm-serve sets the private _return_log_probs for
            # logprobs=1 on an engine without gather_generation_logits: the sampled token's logprob
            shape = "sampled"
        req = _Request(out, sp, ids,
                       end_id=-1 if sp.ignore_eos else (sp.end_id if sp.end_id is not None else -1),
                       stop_words=[] if drop_words else sp._stop_words(self.tokenizer),
                       stop_strings=sp._stop_strings() if TRAITS.stop_in_text else [],
                       logprob_shape=shape,
                       honour_seed=self._backend == "tensorrt" or TRAITS.pytorch_seeds_honoured)
        self._executor.submit(req, self._limits, self.tokenizer)
        return out

    def _encode_prompt(self, text: str, sp: SamplingParams) -> list:
        """A text prompt's ids; ``truncate_prompt_tokens`` truncates here, in the tokenizer, from
        the left (issue 16's reading of the input processor: ``truncation_side='left'``; the facts
        leave its mechanics unread), so special tokens the tokenizer adds count in the k kept."""
        tok = self.tokenizer
        k = sp.truncate_prompt_tokens
        if k is None:
            return [int(t) for t in tok.encode(text, add_special_tokens=sp.add_special_tokens)]
        side = getattr(tok, "truncation_side", "right")
        tok.truncation_side = "left"
        try:
            return [int(t) for t in tok.encode(text, add_special_tokens=sp.add_special_tokens,
                                                truncation=True, max_length=k)]
        finally:
            tok.truncation_side = side

    def _check_arguments(self, prompt_len: int, query_len: int, sp: SamplingParams) -> None:
        """facts overlength_error_llmapi.pytorch_backend: prompt length checked against
        max_num_tokens only, printed as prompt_len / cp_size (a float)."""
        n = self._limits.max_num_tokens
        if not self._chunked_prefill and n is not None and prompt_len + query_len > n:
            raise ValueError(f"The sum of prompt length ({prompt_len / 1}), query length ({query_len})"
                             f" should not exceed max_num_tokens ({n})")

    # -- contract: llm.shutdown(); the object is also a context manager -----------------------
    def shutdown(self) -> None:
        CALLS.append(("shutdown", {"class": f"{type(self).__module__}.{type(self).__qualname__}"}))
        if self._executor is not None:
            self._executor.stop()
            self._executor = None

    def __enter__(self) -> "_BaseLLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __del__(self) -> None:
        ex = getattr(self, "_executor", None)
        if ex is not None:
            ex.stop()


def _torch_dtype(dtype: str, hf_cfg: Any = None) -> Any:
    import torch

    if dtype in (None, "auto"):
        value = getattr(hf_cfg, "dtype", None) or getattr(hf_cfg, "torch_dtype", None) or torch.float32
        return value if isinstance(value, torch.dtype) else getattr(torch, str(value))
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}")
    return getattr(torch, _DTYPES[dtype])


def hf_config_from_pretrained_config(pre: dict[str, Any]) -> Any:
    """A transformers config with the dimensions an engine's pretrained_config records.

    NOT IN CONTRACT: the double's stand-in for deserializing an engine. The keys used are the
    ones TensorRT-LLM writes (see the shared example config.json).
    """
    from transformers import AutoConfig

    arch = pre.get("architecture")
    if arch not in _ARCHITECTURES:
        raise ValueError(f"the contract double cannot run architecture {arch!r}"
                         f" (supported: {', '.join(sorted(_ARCHITECTURES))})")
    kw: dict[str, Any] = {
        "vocab_size": pre["vocab_size"],
        "hidden_size": pre["hidden_size"],
        "num_hidden_layers": pre["num_hidden_layers"],
        "num_attention_heads": pre["num_attention_heads"],
        "num_key_value_heads": pre.get("num_key_value_heads", pre["num_attention_heads"]),
        "intermediate_size": pre["intermediate_size"],
        "max_position_embeddings": pre["max_position_embeddings"],
        "hidden_act": pre.get("hidden_act", "silu"),
        "rms_norm_eps": pre.get("norm_epsilon", 1e-6),
        "rope_theta": pre.get("rotary_base", 10000.0),
        "tie_word_embeddings": pre.get("tie_word_embeddings", False),
    }
    if pre.get("head_size"):
        kw["head_dim"] = pre["head_size"]
    if _ARCHITECTURES[arch] == "llama":
        kw["attention_bias"] = bool(pre.get("attn_bias", False))
        kw["mlp_bias"] = bool(pre.get("mlp_bias", False))
    if pre.get("rotary_scaling"):
        kw["rope_scaling"] = pre["rotary_scaling"]
    return AutoConfig.for_model(_ARCHITECTURES[arch], **kw)


# ---------------------------------------------------------------------------------------------
# the executor


class _Executor:
    """In-flight batching stand-in: one thread; requests that arrive together decode as a wave."""

    def __init__(self, model: Any, max_batch_size: int) -> None:
        self._model = model
        self._max_batch = max_batch_size
        self._incoming: "queue.Queue[Optional[tuple[_Request, _Limits, Any]]]" = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trtllm-double-executor", daemon=True)
        self._thread.start()

    def submit(self, req: _Request, limits: _Limits, tokenizer: Any) -> None:
        self._incoming.put((req, limits, tokenizer))

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._incoming.put(None)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=30)

    def _run(self) -> None:
        import time

        import torch

        waiting: list[tuple[_Request, _Limits, Any]] = []
        with torch.inference_mode():
            while not self._stopped.is_set():
                if not waiting:
                    item = self._incoming.get()
                    if item is None:
                        break
                    waiting.append(item)
                deadline = time.monotonic() + WAVE_GATHER_S  # let a batch submitted together arrive
                while True:
                    try:
                        item = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is None:
                        self._stopped.set()
                        break
                    waiting.append(item)
                if self._stopped.is_set():
                    break
                wave, waiting = waiting[:self._max_batch], waiting[self._max_batch:]
                admitted = [(req, tok) for req, limits, tok in wave if self._admit(req, limits)]
                if admitted:
                    self._run_wave(admitted)
        for req, _, _ in waiting:
            req.out._push(None, True, RequestError("LLM was shut down before the request was enqueued"))

    def _admit(self, req: _Request, limits: _Limits) -> bool:
        """Enqueue-time checks (contract "Limits and errors": enqueue failures are RequestError;
        a max_tokens larger than the room left is clamped with a warning, not an error)."""
        import torch

        p = len(req.prompt_ids)
        if p == 0:
            req.out._push(None, True, RequestError("the prompt has no tokens"))
            return False
        # NOT IN CONTRACT (message): the C++ executor's input-length check, surfaced as RequestError
        if limits.max_input_len is not None and p > limits.max_input_len:
            req.out._push(None, True, RequestError(
                f"Prompt length ({p}) exceeds maximum input length ({limits.max_input_len})."))
            return False
        room = limits.max_seq_len - p
        if room < 1:
            req.out._push(None, True, RequestError(
                f"Prompt length ({p}) leaves no room for output under max_seq_len ({limits.max_seq_len})."))
            return False
        req.max_new = req.params.max_tokens
        if req.max_new > room:
            logger.warning("Number of requested output tokens (%d) exceeds maximum sequence length (%d)."
                           " Number of requested output tokens is changed to (%d).",
                           req.params.max_tokens, limits.max_seq_len, room)
            req.max_new = room
        global _SHARED_RNG
        if req.honour_seed:
            seed = req.params.seed if req.params.seed is not None else 0  # facts: None -> runtime default 0
            req.generator = torch.Generator().manual_seed(int(seed))
        else:
            if _SHARED_RNG is None:
                _SHARED_RNG = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
            req.generator = _SHARED_RNG
        return True

    def _run_wave(self, rows: list[tuple[_Request, Any]]) -> None:
        """Decode ``rows`` together: left-padded prompts, one forward pass per step."""
        import torch

        B = len(rows)
        width = max(len(r.prompt_ids) for r, _ in rows)
        input_ids = torch.zeros((B, width), dtype=torch.long)
        mask = torch.zeros((B, width), dtype=torch.long)
        for b, (r, _) in enumerate(rows):
            n = len(r.prompt_ids)
            input_ids[b, width - n:] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[b, width - n:] = 1
        cur_ids, cur_pos = input_ids, (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        active = [True] * B
        while any(active):
            if self._stopped.is_set():
                for b, (r, _) in enumerate(rows):
                    if active[b]:
                        r.out._push(None, True, RequestError("LLM was shut down before the request finished"))
                return
            try:
                out = self._model(input_ids=cur_ids, attention_mask=mask, position_ids=cur_pos,
                                  past_key_values=past, use_cache=True)
            except Exception as exc:  # a failure inside the engine fails the wave's requests
                for b, (r, _) in enumerate(rows):
                    if active[b]:
                        r.out._push(None, True, RequestError(f"request {r.out.request_id} failed: {exc}"))
                return
            past = out.past_key_values
            logits = out.logits[:, -1].float()
            nxt = torch.zeros((B, 1), dtype=torch.long)
            for b, (r, tok) in enumerate(rows):
                if not active[b]:
                    continue
                try:
                    token, done = self._advance(r, logits[b], tok)
                except Exception as exc:  # a failure inside the engine fails that request only
                    r.out._push(None, True, RequestError(f"request {r.out.request_id} failed: {exc}"))
                    active[b] = False
                    continue
                nxt[b, 0] = token
                active[b] = not done
            cur_ids = nxt
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype)], dim=-1)
            cur_pos = cur_pos[:, -1:] + 1

    def _advance(self, req: _Request, logits: Any, tokenizer: Any) -> tuple[int, bool]:
        """Choose ``req``'s next token from its logits; push a snapshot; (token, finished)."""
        import torch

        sp = req.params
        logprobs = torch.log_softmax(logits, dim=-1)
        scores = logits.clone()
        end_id = req.end_id
        # min_tokens: the end id cannot be chosen before that many tokens exist
        if sp.min_tokens and len(req.generated) < sp.min_tokens and end_id >= 0:
            scores[end_id] = -math.inf
        token = _choose(scores, sp, req.generator)
        lp = float(logprobs[token])
        if req.logprob_shape == "sampled":  # facts logprobs_limits: the sampled token's logprob only
            req.logprobs.append(lp)
        elif req.logprob_shape == "topk":
            entry = {token: Logprob(lp, int((logprobs > logprobs[token]).sum()) + 1)}
            vals, idx = torch.topk(logprobs, int(sp.logprobs))
            for rank, (v, i) in enumerate(zip(vals.tolist(), idx.tolist(), strict=True), start=1):
                entry.setdefault(int(i), Logprob(float(v), rank))
            req.logprobs.append(entry)
        req.cumulative += lp

        finish: Optional[str] = None
        stop_reason: Any = None
        if token == end_id:
            # END_ID: the end id stays in token_ids (and its logprob), never trimmed (TorchSampler
            # appends the token before it checks end_id; main's stop-word trimming unit test:
            # "The END_ID path never trimmed", token_ids [.., END_ID]); the text skips it
            finish = "stop"
            req.generated.append(token)
        else:
            req.generated.append(token)
            for reason, ids in req.stop_words:  # token level: the runtime's stop words
                if req.generated[-len(ids):] == ids:
                    finish, stop_reason = "stop", reason
                    if not sp.include_stop_str_in_output:
                        del req.generated[-len(ids):]
                        if req.logprob_shape is not None:
                            del req.logprobs[-len(ids):]
                    break
            if finish is None and len(req.generated) >= req.max_new:
                finish = "length"
        text = ""
        if sp.detokenize and tokenizer is not None:
            text = tokenizer.decode(req.generated, skip_special_tokens=sp.skip_special_tokens)
            # text level (1.x executor/result.py): the first stop string, in the order given, found
            # anywhere in the text cuts it there; the ids are not trimmed; the request is aborted
            for stop in req.stop_strings:
                if stop in text:
                    pos = text.find(stop)
                    text = text[:pos + len(stop)] if sp.include_stop_str_in_output else text[:pos]
                    finish, stop_reason = "stop", stop
                    break
        output = CompletionOutput(
            index=0, text=text, token_ids=list(req.generated),
            cumulative_logprob=req.cumulative if req.logprob_shape is not None else None,
            logprobs=list(req.logprobs),
            finish_reason=finish, stop_reason=stop_reason,
        )
        req.out._push(output, finish is not None)
        return token, finish is not None


def _choose(scores: Any, sp: SamplingParams, generator: Any) -> int:
    """Greedy when temperature, top_p and top_k are all None (contract), else sampling."""
    import torch

    if sp._greedy_decoding:
        return int(torch.argmax(scores))
    temperature = 1.0 if sp.temperature is None else float(sp.temperature)
    if temperature == 0.0:
        return int(torch.argmax(scores))  # NOT IN CONTRACT: temperature 0 in sampling mode
    scores = scores / temperature
    if sp.top_k:  # None or 0: all tokens
        kth = torch.topk(scores, min(int(sp.top_k), scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if sp.top_p is not None and sp.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        cut = torch.cumsum(probs, dim=-1) - probs > sp.top_p
        sorted_scores[cut] = -math.inf
        scores = torch.full_like(scores, -math.inf).scatter(0, order, sorted_scores)
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def load_engine_weights(engine_dir: Path, hf_cfg: Any, dtype: Any) -> Any:
    """NOT IN CONTRACT: the double's "engine plan" rank0.engine is a safetensors file of HF weights."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    plan = engine_dir / "rank0.engine"
    if not plan.is_file():
        raise RuntimeError(f"Failed to deserialize cuda engine: {plan} does not exist")
    try:  # skip the random initialisation: every weight is overwritten below
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]  # 4.x
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype)
    state = load_file(str(plan))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (hf_cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"Failed to deserialize cuda engine {plan}: missing {missing[:3]},"
                           f" unexpected {unexpected[:3]}")
    if hf_cfg.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model


def engine_limits(build: BuildConfig) -> _Limits:
    assert build.max_seq_len is not None
    return _Limits(max_seq_len=build.max_seq_len, max_input_len=build.max_input_len,
                   max_num_tokens=build.max_num_tokens, max_batch_size=build.max_batch_size)


def as_build_config(value: Any) -> BuildConfig:
    if isinstance(value, BuildConfig):
        return value
    raise TypeError(f"build_config must be a BuildConfig, got {type(value).__name__}")
