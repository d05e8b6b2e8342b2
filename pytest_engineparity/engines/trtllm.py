"""TensorRT-LLM adapter, in process, through TensorRT-LLM's LLM API.

Follows shared/engines/TENSORRT_LLM.md, the API surface this project relies on:

- A directory whose config.json has both ``pretrained_config`` and ``build_config`` is a prebuilt
  engine: it is loaded with ``tensorrt_llm._tensorrt_engine.LLM(model=engine_dir,
  tokenizer=...)``, with ``gather_generation_logits=True`` when the engine was built with it (the
  TensorRT backend needs it for logprobs). Any other directory is a Hugging Face checkpoint for
  ``tensorrt_llm.LLM`` (the PyTorch backend).
- ``spec.args`` are LlmArgs kwargs; ``kv_cache_config`` / ``build_config`` given as tables are
  turned into ``tensorrt_llm.llmapi.KvCacheConfig`` / ``BuildConfig``.
- The batch runs through ``generate_async(prompt, sampling_params, streaming=True)``, all requests
  at once on one event loop, so every output token gets a timestamp (``Timings.source`` is
  ``"engine-stream"``).
- A request the engine rejects (the over-length ``ValueError``, ``RequestError``) becomes that
  request's ``Completion.error``; the rest of the batch still runs. ``max_tokens`` clamped by the
  engine (``finish_reason="length"`` before ``max_tokens``) is recorded in ``Completion.warnings``.

Versions (``engines/data/trtllm-{0.17,1.0,1.2,main}.json`` record the facts, read from TensorRT-LLM's
source; ``version_series`` maps a version to its facts file):

- tensorrt_llm older than 1.0 is refused at start with the version found and the version needed:
  0.17 has no ``tensorrt_llm._tensorrt_engine``, and its ``LLM`` builds a TensorRT engine rather
  than running the PyTorch backend.
- What the installed version and target can return goes into ``EngineInfo.details
  ["capabilities"]``: the PyTorch backend of 1.0 returns only the sampled token's logprob (top-k
  from 1.2), and ignores per-request seeds before main; an engine directory returns logprobs only
  when built with ``gather_generation_logits``, and then its timings come from a path TensorRT-LLM
  itself calls slower (``production_timings`` false, said in the report); ``truncate_prompt_tokens``
  is applied to text prompts only: a token-id prompt is used whole, and its prompt length is
  reported as such (with a warning), never as if truncated.
- ``CompletionOutput.logprobs`` defaults to ``[]``: an empty list means "no logprobs".

Every call into ``tensorrt_llm`` is in ``_TensorRTLLMAPI`` at the end of this file. Nothing heavy is
imported at module level: ``validate`` runs in the pytest process.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

from .enginedir import EngineDirError, EngineDirInfo, inspect_engine_dir
from ..types import Completion, EngineInfo, EngineLimits, GenerationRequest, Timings, TokenLogprobs
from .base import STOP_TOKEN_IDS_AND_TEXT, Capabilities, EngineSpec, EngineSpecError, ProgressFn, eos_stop_reason

__all__ = ["TRTLLMEngine"]

ENGINE_LLM = "tensorrt_llm._tensorrt_engine.LLM"
PYTORCH_LLM = "tensorrt_llm.LLM"

# GenerationRequest field -> the SamplingParams keyword it needs (checked against the installed
# tensorrt_llm, whose SamplingParams differs between versions).
_CORE_PARAMS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")
MIN_VERSION = "1.0"  # the oldest tensorrt_llm this adapter runs (see the module docstring)
MAX_LOGPROBS = 20  # the most top logprobs a GenerationRequest asks for
NON_PRODUCTION_TIMINGS = (
    "latency measured with gather_generation_logits on (needed for logprobs on an engine directory):"
    " TensorRT-LLM gathers the logits on a slower path than production serving uses; time a build"
    " without it for production latency")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass(frozen=True)
class _Output:
    """One (partial) RequestOutput, copied out of tensorrt_llm's objects into plain data."""

    token_ids: list
    text: str
    finish_reason: Optional[str]
    stop_reason: Any
    logprobs: Optional[list]
    prompt_token_ids: Optional[list]


@dataclass(frozen=True)
class _Target:
    path: Path
    engine: Optional[EngineDirInfo]  # None: a Hugging Face checkpoint

    @property
    def is_engine(self) -> bool:
        return self.engine is not None


def _classify(spec: EngineSpec) -> _Target:
    """Engine dir or checkpoint dir; EngineSpecError naming the path for anything else."""
    label = spec.label
    if not spec.target:
        raise EngineSpecError(
            f"engine {label!r}: kind 'trtllm' needs target = a TensorRT-LLM engine directory"
            " (trtllm-build output) or a Hugging Face checkpoint directory"
        )
    path = Path(spec.target).expanduser()
    if not path.exists():
        raise EngineSpecError(
            f"engine {label!r}: target {str(path)!r} does not exist (expected a TensorRT-LLM engine"
            " directory or a Hugging Face checkpoint directory)"
        )
    if not path.is_dir():
        raise EngineSpecError(f"engine {label!r}: target {str(path)!r} is not a directory")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise EngineSpecError(
            f"engine {label!r}: {str(path)!r} has no config.json, so it is neither a TensorRT-LLM"
            " engine directory nor a Hugging Face checkpoint"
        )
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineSpecError(f"engine {label!r}: cannot read {str(cfg)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise EngineSpecError(f"engine {label!r}: {str(cfg)!r} does not hold a JSON object")
    has = [k for k in ("pretrained_config", "build_config") if k in data]
    if not has:
        return _Target(path, None)
    try:
        info = inspect_engine_dir(path)
    except EngineDirError as exc:
        raise EngineSpecError(f"engine {label!r}: {exc}") from None
    if info.missing_rank_files:
        raise EngineSpecError(
            f"engine {label!r}: engine directory {str(path)!r} lacks {', '.join(info.missing_rank_files)}"
            f" (its config.json says world_size={info.world_size})"
        )
    return _Target(path, info)


def _tokenizer_dir(spec: EngineSpec, target: _Target) -> Path:
    if spec.tokenizer:
        tok = Path(spec.tokenizer).expanduser()
        if not tok.is_dir():
            raise EngineSpecError(
                f"engine {spec.label!r}: tokenizer {str(tok)!r} is not a directory (give the Hugging Face"
                " checkpoint or tokenizer directory the engine was built from)"
            )
        return tok
    if target.engine is not None and not target.engine.has_tokenizer:
        raise EngineSpecError(
            f"engine {spec.label!r}: engine directory {str(target.path)!r} has no tokenizer files"
            f" ({', '.join(_TOKENIZER_FILES)}); set tokenizer to the Hugging Face checkpoint it was built from"
        )
    return target.path


class TRTLLMEngine:
    """TensorRT-LLM through its in-process LLM API (TensorRT engine dir or PyTorch checkpoint)."""

    kind: ClassVar[str] = "trtllm"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transport="in-process",
        limits_source="engine config.json build_config (max_seq_len, max_input_len, max_batch_size) or LlmArgs",
        packages=(("tensorrt", ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")),
                  ("tensorrt_llm", ("tensorrt-llm",)), ("torch", ("torch",))),
        embedded_args={},
        compiled_engine_dir=True,
        truncate_prompt_tokens_ids=False,
        stop_strings=STOP_TOKEN_IDS_AND_TEXT,
        min_tokens_holds_stops=False,
        overlength_max_tokens="either",
        notes=("logprobs, seeds and timing path depend on the installed version and the target;"
               " start() reports them",),
    )

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        return cls.CAPABILITIES

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._api: Optional[_TensorRTLLMAPI] = None
        self._llm: Any = None
        self._tokenizer: Any = None
        self._target: Optional[_Target] = None
        self._logprobs_available = False
        self._logprobs_k = 0  # most top logprobs this engine returns (1: the sampled token's only)
        self._seeds_honoured = True
        self._max_seq_len: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # -- Engine protocol ---------------------------------------------------------------------
    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        """Cheap checks in the pytest process: target and tokenizer exist, engine dir is whole."""
        target = _classify(spec)
        _tokenizer_dir(spec, target)
        if target.engine is not None:
            from ..runtime.placement import check_placement

            check_placement(spec, None, engine_dir_tp=target.engine.tp_size)
        if not isinstance(spec.args, dict) or not all(isinstance(k, str) for k in spec.args):
            raise EngineSpecError(f"engine {spec.label!r}: args must be a table of LLM keyword arguments")
        for key in ("model", "tokenizer"):
            if key in spec.args:
                raise EngineSpecError(f"engine {spec.label!r}: args.{key} is not allowed: set the spec's"
                                      f" {'target' if key == 'model' else 'tokenizer'} instead")

    def start(self) -> EngineInfo:
        spec = self.spec
        self.validate(spec)
        target = _classify(spec)
        tok_dir = _tokenizer_dir(spec, target)
        self._target = target
        api = _TensorRTLLMAPI.load(spec.label)
        self._api = api

        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        args = dict(spec.args)
        warnings: list[str] = []
        if target.engine is not None:
            eng = target.engine
            # the TensorRT backend computes logprobs from generation logits; only an engine built
            # with gather_generation_logits can return them
            if eng.gather_generation_logits:
                args.setdefault("gather_generation_logits", True)
            self._logprobs_available = bool(args.get("gather_generation_logits"))
            self._max_seq_len = eng.max_seq_len
            if eng.builder_version and eng.builder_version != api.version:
                warnings.append(
                    f"engine built by tensorrt_llm {eng.builder_version}, running under {api.version}:"
                    " TensorRT-LLM does not check this; rebuild if loading fails"
                )
            limits = EngineLimits(max_model_len=eng.max_seq_len, max_input_len=eng.max_input_len,
                                  max_batch_size=eng.max_batch_size)
        else:
            self._logprobs_available = True
            self._max_seq_len = _int_or_none(args.get("max_seq_len"))
            limits = EngineLimits(max_model_len=self._max_seq_len,
                                  max_batch_size=_int_or_none(args.get("max_batch_size")))

        series = api.series
        gather = bool(args.get("gather_generation_logits", False))
        if target.is_engine:
            self._logprobs_k = MAX_LOGPROBS if self._logprobs_available else 0
            self._seeds_honoured = True  # forwarded to the C++ SamplingConfig
        else:
            self._logprobs_k = MAX_LOGPROBS if series in ("1.2", "main") else 1
            self._seeds_honoured = series == "main"
        notes = [f"tensorrt_llm {api.version}: facts in engines/data/trtllm-{series}.json"]
        if target.is_engine and not self._logprobs_available:
            notes.append("engine built without gather_generation_logits: no logprobs")
        if self._logprobs_k == 1:
            notes.append(f"the PyTorch backend of tensorrt_llm {api.version} returns only the sampled token's logprob")
        if not self._seeds_honoured:
            notes.append(f"the PyTorch backend of tensorrt_llm {api.version} ignores per-request seeds")
        notes.append("truncate_prompt_tokens applies to text prompts only; token-id prompts are used whole")
        if target.is_engine and gather:
            notes.append(NON_PRODUCTION_TIMINGS)
        capabilities = {
            "token_ids": True, "prompt_token_ids": True, "logprobs_top_k": self._logprobs_k,
            "seeds_honoured": self._seeds_honoured, "truncate_prompt_tokens_text": True,
            "truncate_prompt_tokens_ids": False, "stop_strings": STOP_TOKEN_IDS_AND_TEXT, "tokenize": True,
            "production_timings": not (target.is_engine and gather),
            "min_tokens_holds_stops": False,
            "documented_by": f"tensorrt_llm {api.version}: TensorRT-LLM's source, engines/data/trtllm-{series}.json",
            # facts overlength_max_tokens: an engine dir refuses; the PyTorch worker clamps from 1.2
            "overlength_max_tokens": "refuse" if target.is_engine else ("clamp" if series in ("1.2", "main") else "either"),
            "source": f"tensorrt_llm {api.version} ({'engine directory' if target.is_engine else 'PyTorch backend'})",
            "notes": notes,
        }

        self._llm = api.create_llm(spec.label, engine=target.is_engine, model=str(target.path),
                                   tokenizer=str(tok_dir), args=args)
        self._loop = asyncio.new_event_loop()

        details: dict[str, Any] = {
            "backend": "tensorrt" if target.is_engine else "pytorch",
            "llm_class": ENGINE_LLM if target.is_engine else PYTORCH_LLM,
            "tokenizer": str(tok_dir),
            "python": sys.executable,
            "logprobs_available": self._logprobs_available,
            "gather_generation_logits": gather,
            "args": sorted(spec.args),
            "tensorrt_llm_series": series,
            "capabilities": capabilities,
            "latency_path": NON_PRODUCTION_TIMINGS if (target.is_engine and gather) else "production",
            # the ids that end an output: SamplingParams._setup sets end_id = tokenizer.eos_token_id
            # (tensorrt_llm/sampling_params.py at 000a01de (1.0) and a98a9061; kimi_k2 alone takes
            # the generation config's); on main (2026) _setup also adds the generation config's
            # other eos_token_id entries as stop_token_ids (stop-word trimming unit test, stored
            # id 71082516167): stopped on, reported as stop_reason=id and trimmed from token_ids
            "eos_token_ids": _eos_ids(self._tokenizer, _generation_eos(tok_dir, target.path) if series == "main" else ()),
        }
        if target.engine is not None:
            eng = target.engine
            details.update({
                "dtype": eng.dtype, "architecture": eng.architecture,
                "tp_size": eng.tp_size, "pp_size": eng.pp_size, "world_size": eng.world_size,
                "quant_algo": eng.quant_algo, "kv_cache_quant_algo": eng.kv_cache_quant_algo,
                "engine_builder_version": eng.builder_version,
                "max_num_tokens": eng.max_num_tokens, "max_beam_width": eng.max_beam_width,
                "engine_bytes": eng.engine_bytes,
            })
        else:
            details.update({
                "dtype": str(args.get("dtype", "auto")) if args.get("dtype") else _checkpoint_dtype(target.path),
                "tp_size": int(args.get("tensor_parallel_size", 1)),
                "max_num_tokens": _int_or_none(args.get("max_num_tokens")),
            })
        if warnings:
            details["warnings"] = warnings
        return EngineInfo(kind=self.kind, model=str(spec.target), version=api.version,
                          limits=limits, details=details)

    def generate(self, requests: Sequence[GenerationRequest],
                 progress: Optional[ProgressFn] = None) -> list[Completion]:
        if self._llm is None or self._loop is None:
            raise RuntimeError(f"engine {self.spec.label!r} is not started")
        if not requests:
            return []
        return self._loop.run_until_complete(self._generate_all(list(requests), progress))

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            raise RuntimeError(f"engine {self.spec.label!r} is not started")
        return [int(t) for t in self._tokenizer.encode(text, add_special_tokens=False)]

    def close(self) -> None:
        llm, self._llm = self._llm, None
        try:
            if llm is not None and self._api is not None:
                self._api.shutdown(llm)
        finally:
            if self._loop is not None:
                self._loop.close()
                self._loop = None

    # -- generation --------------------------------------------------------------------------
    async def _generate_all(self, requests: list[GenerationRequest],
                            progress: Optional[ProgressFn]) -> list[Completion]:
        state = {"done": 0, "tokens": 0}
        total = len(requests)

        def report(new_tokens: int, finished: bool) -> None:
            state["tokens"] += new_tokens
            if finished:
                state["done"] += 1
            if progress is not None:
                progress(state["done"], total, state["tokens"])

        results = await asyncio.gather(*(self._one(r, report) for r in requests), return_exceptions=True)
        for r in results:  # anything not mapped to a per-request error is a bug: raise it
            if isinstance(r, BaseException):
                raise r
        return list(results)  # type: ignore[arg-type]

    def _prompt(self, request: GenerationRequest) -> tuple[Any, bool]:
        """(prompt for generate_async, add_special_tokens)."""
        if request.messages is not None:
            text = self._tokenizer.apply_chat_template(
                [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True)
            return text, False  # the template already holds every special token
        if request.prompt_token_ids is not None:
            return [int(t) for t in request.prompt_token_ids], True
        return request.prompt, True

    def _local_prompt_len(self, prompt: Any, add_special: bool, request: GenerationRequest) -> Optional[int]:
        """The prompt length the engine used, for a request it rejected: a token-id prompt is used
        whole (TensorRT-LLM does not apply truncate_prompt_tokens to it), a text prompt is cut."""
        if isinstance(prompt, list):
            return len(prompt)
        try:
            n = len(self._tokenizer.encode(prompt, add_special_tokens=add_special))
        except Exception:
            return None
        if request.truncate_prompt_tokens is not None:
            n = min(n, request.truncate_prompt_tokens)
        return n

    def _logprobs_asked(self, request: GenerationRequest) -> Optional[int]:
        """Top logprobs to ask TensorRT-LLM for: what the request wants (at least 1: 0 would ask for
        none, where vLLM's 0 means the sampled token's), capped at what this engine returns."""
        if request.logprobs is None or self._logprobs_k == 0:
            return None
        return max(1, min(request.logprobs, self._logprobs_k))

    async def _one(self, request: GenerationRequest, report: Callable[[int, bool], None]) -> Completion:
        assert self._api is not None
        api = self._api
        prompt, add_special = self._prompt(request)
        kwargs = sampling_kwargs(request, add_special_tokens=add_special, logprobs=self._logprobs_asked(request))
        unsupported = api.unsupported_sampling_params(kwargs)
        if unsupported:
            report(0, True)
            return Completion.failed(
                f"tensorrt_llm {api.version}: SamplingParams has no {', '.join(repr(k) for k in unsupported)}"
                f" (needed by this request); upgrade tensorrt_llm or drop the field",
                "UnsupportedParameter", self._local_prompt_len(prompt, add_special, request))
        times: list[float] = []  # when each output token arrived, from t0

        def on_tokens(n: int) -> None:
            now = time.perf_counter() - t0
            if n > len(times):
                report(n - len(times), False)
                times.extend([now] * (n - len(times)))

        t0 = time.perf_counter()
        try:
            final = await api.run(self._llm, prompt, kwargs, on_tokens)
        except Exception as exc:
            if not api.is_request_rejection(exc):
                raise
            report(0, True)
            return Completion.failed(str(exc), type(exc).__name__,
                                     self._local_prompt_len(prompt, add_special, request))
        e2e = time.perf_counter() - t0
        report(0, True)
        if final is None:
            return Completion.failed("tensorrt_llm returned no output for the request", "EmptyResult",
                                     self._local_prompt_len(prompt, add_special, request))
        return self._completion(request, final, times, e2e)

    def _completion(self, request: GenerationRequest, out: _Output, times: list[float], e2e: float) -> Completion:
        ids = out.token_ids
        # stop words trimmed at the end had timestamps while they streamed: keep one per output token
        token_times = times[:len(ids)]
        timings = Timings(ttft=token_times[0] if token_times else None, e2e=e2e, token_times=token_times,
                          source="engine-stream")
        prompt_len = len(out.prompt_token_ids) if out.prompt_token_ids is not None else None
        warnings: list[str] = []
        logprobs: Optional[list[TokenLogprobs]] = None
        if request.logprobs is not None:
            if self._logprobs_k == 0:
                warnings.append(
                    f"logprobs not available: engine {self.spec.target} was built without"
                    " gather_generation_logits (rebuild with --gather_generation_logits)")
            elif out.logprobs:  # CompletionOutput.logprobs is [] when there are none
                logprobs = map_logprobs(out.logprobs, ids, request.logprobs, self._decode_one)
        if request.truncate_prompt_tokens is not None and request.prompt_token_ids is not None:
            warnings.append(f"truncate_prompt_tokens={request.truncate_prompt_tokens} ignored: TensorRT-LLM"
                            f" uses a token-id prompt whole ({prompt_len} tokens)")
        if request.seed is not None and not request.greedy and not self._seeds_honoured:
            warnings.append(f"seed {request.seed} not honoured: the PyTorch backend of this tensorrt_llm"
                            " ignores per-request seeds")
        if out.finish_reason == "length" and len(ids) < request.max_tokens:
            room = ""
            if self._max_seq_len is not None and prompt_len is not None:
                room = f" (prompt {prompt_len} tokens, max_seq_len {self._max_seq_len})"
            warnings.append(
                f"max_tokens {request.max_tokens} clamped by the engine: produced {len(ids)} tokens{room}")
        # a stop id the request did not ask for (main adds the generation config's EOS ids as stop words)
        stop_reason, note = eos_stop_reason(out.stop_reason, request, "tensorrt_llm")
        if note:
            warnings.append(note)
        return Completion(
            text=out.text,
            token_ids=ids,
            token_texts=[self._decode_one(t) for t in ids],
            finish_reason=out.finish_reason,
            stop_reason=stop_reason,
            logprobs=logprobs,
            prompt_token_count=prompt_len,
            prompt_token_ids=list(out.prompt_token_ids) if out.prompt_token_ids is not None else None,
            timings=timings,
            warnings=warnings,
        )

    def _decode_one(self, token_id: int) -> str:
        return str(self._tokenizer.decode([int(token_id)]))


# -- pure mapping (no tensorrt_llm) -------------------------------------------------------------


def _eos_ids(tokenizer: Any, generation_eos: Sequence[int] = ()) -> Optional[list]:
    """The EOS set TensorRT-LLM stops on by default: the tokenizer's ``eos_token_id``, plus the
    generation config's ids where the version adds them as stop words."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if not (isinstance(eos, int) and not isinstance(eos, bool)):
        return None
    return sorted({int(eos), *(int(t) for t in generation_eos)})


def _generation_eos(*folders: Any) -> list:
    """``eos_token_id`` of the first ``generation_config.json`` found in ``folders`` (an int or a
    list in the file), [] when there is none."""
    for folder in folders:
        path = Path(str(folder)) / "generation_config.json" if folder else None
        if path is None or not path.is_file():
            continue
        try:
            eos = json.loads(path.read_text()).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            return []
        items = eos if isinstance(eos, list) else [eos]
        return [int(t) for t in items if isinstance(t, int) and not isinstance(t, bool)]
    return []


def sampling_kwargs(request: GenerationRequest, add_special_tokens: bool = True,
                    logprobs: Optional[int] = None) -> dict[str, Any]:
    """SamplingParams keyword arguments for ``request`` (TENSORRT_LLM.md, "SamplingParams").

    Greedy requests leave temperature, top_p and top_k unset (None), which is TensorRT-LLM's
    greedy mode; fields at their neutral value are left out so older versions still accept the
    rest. ``logprobs`` is the number of top logprobs to ask for (None: none).
    """
    kw: dict[str, Any] = {"max_tokens": request.max_tokens}
    if not request.greedy:
        kw["temperature"] = request.temperature
        kw["top_p"] = request.top_p
        kw["top_k"] = request.top_k if request.top_k > 0 else None  # None: all tokens
    if request.seed is not None:
        kw["seed"] = request.seed
    if request.stop:
        kw["stop"] = list(request.stop)
    if request.stop_token_ids:
        kw["stop_token_ids"] = list(request.stop_token_ids)
    if request.include_stop_str_in_output:
        kw["include_stop_str_in_output"] = True
    if request.ignore_eos:
        kw["ignore_eos"] = True
    if request.min_tokens:
        kw["min_tokens"] = request.min_tokens
    if logprobs is not None:
        kw["logprobs"] = logprobs
    if request.truncate_prompt_tokens is not None:
        kw["truncate_prompt_tokens"] = request.truncate_prompt_tokens
    if not add_special_tokens:
        kw["add_special_tokens"] = False
    return kw


def map_logprobs(entries: Sequence[Any], token_ids: Sequence[int], k: int,
                 decode: Any = None) -> list[TokenLogprobs]:
    """TensorRT-LLM's ``CompletionOutput.logprobs`` as TokenLogprobs, one per output token.

    Two shapes exist (TENSORRT_LLM.md, "Outputs"): a list of ``{token_id: Logprob(logprob, rank)}``
    (the sampled token plus the top-k), or a list of floats (the sampled token's logprob only).
    ``top`` keeps the entries ranked within ``k``.
    """
    out: list[TokenLogprobs] = []
    for pos, tid in enumerate(token_ids):
        if pos >= len(entries):
            break
        entry = entries[pos]
        if isinstance(entry, dict):
            top: dict[int, float] = {}
            sampled: Optional[float] = None
            for key, value in entry.items():
                lp = float(value.logprob if hasattr(value, "logprob") else value)
                rank = getattr(value, "rank", None)
                if int(key) == int(tid):
                    sampled = lp
                if rank is None or int(rank) <= k:
                    top[int(key)] = lp
            decoded = {t: decode(t) for t in top} if decode is not None else {}
            out.append(TokenLogprobs(int(tid), sampled, top, decoded))
        else:
            out.append(TokenLogprobs(int(tid), float(entry)))
    return out


def version_series(version: Optional[str]) -> Optional[str]:
    """The facts series (``engines/data/trtllm-<series>.json``) a TensorRT-LLM version belongs
    to: "0.17" for anything before 1.0, "1.0" (1.0 and 1.1: the conservative reading), "1.2",
    "main" for 1.3 and later; None when the version cannot be read."""
    import re

    m = re.match(r"^\s*(\d+)\.(\d+)", str(version or ""))
    if not m:
        return None
    major, minor = int(m.group(1)), int(m.group(2))
    if major < 1:
        return "0.17"
    if major == 1 and minor <= 1:
        return "1.0"
    if major == 1 and minor == 2:
        return "1.2"
    return "main"


def _int_or_none(value: Any) -> Optional[int]:
    return int(value) if value is not None else None


def _checkpoint_dtype(path: Path) -> Optional[str]:
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = cfg.get("dtype") or cfg.get("torch_dtype")
    return str(value) if value is not None else None


# -- every call into tensorrt_llm ---------------------------------------------------------------


class _TensorRTLLMAPI:
    """The only code that touches ``tensorrt_llm`` (TENSORRT_LLM.md lists what it may use)."""

    def __init__(self, module: Any, label: str) -> None:
        self.module = module
        self.label = label
        self.version = str(getattr(module, "__version__", "unknown"))
        where = getattr(module, "__file__", "?")
        series = version_series(self.version)
        if series is None:
            raise EngineSpecError(f"engine {label!r}: cannot read the version of tensorrt_llm at {where}"
                                  f" ({self.version!r}); this adapter needs tensorrt_llm >= {MIN_VERSION}")
        if series == "0.17":
            raise EngineSpecError(
                f"engine {label!r}: tensorrt_llm {self.version} (at {where}) is too old: this adapter needs"
                f" tensorrt_llm >= {MIN_VERSION} (found {self.version}; before 1.0 there is no"
                " tensorrt_llm._tensorrt_engine and tensorrt_llm.LLM builds a TensorRT engine instead of"
                " running the PyTorch backend)")
        self.series = series
        SamplingParams = getattr(module, "SamplingParams", None)
        if SamplingParams is None:
            raise EngineSpecError(f"engine {label!r}: tensorrt_llm {self.version} has no SamplingParams;"
                                  " this adapter needs tensorrt_llm >= 1.0")
        try:
            from tensorrt_llm.executor.utils import RequestError
        except ImportError as exc:
            raise EngineSpecError(f"engine {label!r}: tensorrt_llm {self.version} has no"
                                  f" tensorrt_llm.executor.utils.RequestError ({exc})") from None
        self.SamplingParams = SamplingParams
        self.RequestError = RequestError
        try:
            self.sampling_fields = frozenset(inspect.signature(SamplingParams).parameters)
        except (TypeError, ValueError):
            self.sampling_fields = frozenset()
        missing = [p for p in _CORE_PARAMS if p not in self.sampling_fields]
        if missing:
            raise EngineSpecError(
                f"engine {label!r}: tensorrt_llm {self.version} (at {getattr(module, '__file__', '?')}) has a"
                f" SamplingParams without {', '.join(missing)}; this adapter needs tensorrt_llm >= 1.0"
            )

    @classmethod
    def load(cls, label: str) -> "_TensorRTLLMAPI":
        try:
            import tensorrt_llm
        except ImportError as exc:
            raise EngineSpecError(
                f"engine {label!r}: tensorrt_llm is not importable by {sys.executable} ({exc}); install"
                " it (pip install --extra-index-url https://pypi.nvidia.com tensorrt-llm) or point"
                " the engine's python at the venv that has it"
            ) from exc
        return cls(tensorrt_llm, label)

    def _llm_class(self, engine: bool) -> Any:
        llm_class: Any
        if engine:
            from tensorrt_llm._tensorrt_engine import LLM as llm_class
        else:
            from tensorrt_llm import LLM as llm_class
        params = inspect.signature(llm_class.generate_async).parameters
        if "streaming" not in params:
            raise EngineSpecError(
                f"engine {self.label!r}: tensorrt_llm {self.version}: {ENGINE_LLM if engine else PYTORCH_LLM}"
                ".generate_async has no 'streaming' parameter; this adapter needs tensorrt_llm >= 1.0"
            )
        return llm_class

    def _convert_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Tables from a TOML/JSON spec become the config objects LlmArgs expects."""
        out = dict(args)
        for key, name in (("kv_cache_config", "KvCacheConfig"), ("build_config", "BuildConfig")):
            if isinstance(out.get(key), dict):
                from tensorrt_llm import llmapi

                try:
                    out[key] = getattr(llmapi, name)(**out[key])
                except (TypeError, ValueError) as exc:
                    raise EngineSpecError(
                        f"engine {self.label!r}: args.{key} is not a valid tensorrt_llm.llmapi.{name}"
                        f" for tensorrt_llm {self.version}: {exc}") from None
        return out

    def create_llm(self, label: str, engine: bool, model: str, tokenizer: str, args: dict[str, Any]) -> Any:
        LLM = self._llm_class(engine)
        kwargs = self._convert_args(args)
        try:
            return LLM(model=model, tokenizer=tokenizer, **kwargs)
        except ValueError as exc:
            message = str(exc)
            prefix = "LLM got invalid argument: "
            cls_name = ENGINE_LLM if engine else PYTORCH_LLM
            if message.startswith(prefix):
                key = message[len(prefix):].strip()
                raise EngineSpecError(
                    f"engine {label!r}: {cls_name} of tensorrt_llm {self.version} has no argument {key!r}"
                    f" (from the spec's args); remove it or check the LlmArgs of this version") from None
            hint = ""
            if "build_config" in kwargs and not engine:
                hint = ("; target is a checkpoint, loaded with the PyTorch backend: build the engine"
                        " first (trtllm-build) and point target at the engine directory")
            raise EngineSpecError(
                f"engine {label!r}: {cls_name} of tensorrt_llm {self.version} rejected the spec"
                f" (model {model!r}): {message}{hint}") from None

    def unsupported_sampling_params(self, kwargs: dict[str, Any]) -> list[str]:
        if not self.sampling_fields:
            return []
        return [k for k in kwargs if k not in self.sampling_fields]

    async def run(self, llm: Any, prompt: Any, sampling_kwargs: dict[str, Any],
                  on_tokens: Callable[[int], None]) -> Optional[_Output]:
        """One request through ``generate_async(..., streaming=True)``.

        ``on_tokens(n)`` is called with the output length of every partial RequestOutput as it
        arrives; the last one is returned as plain data. Raises what tensorrt_llm raises, at
        enqueue or while streaming.
        """
        sampling_params = self.SamplingParams(**sampling_kwargs)
        last: Any = None
        async for partial in llm.generate_async(prompt, sampling_params, streaming=True):
            on_tokens(len(partial.outputs[0].token_ids))
            last = partial
        return self._snapshot(last) if last is not None else None

    @staticmethod
    def _snapshot(request_output: Any) -> _Output:
        out = request_output.outputs[0]
        prompt_ids = request_output.prompt_token_ids
        return _Output(
            token_ids=[int(t) for t in out.token_ids],
            text=str(out.text or ""),
            finish_reason=out.finish_reason,
            stop_reason=out.stop_reason,
            logprobs=list(out.logprobs) if out.logprobs else None,  # [] (the default): none
            prompt_token_ids=[int(t) for t in prompt_ids] if prompt_ids is not None else None,
        )

    def is_request_rejection(self, exc: BaseException) -> bool:
        """Errors that belong to one request: the engine's ValueErrors (over-length, parameters it
        refuses) and RequestError (enqueue failures)."""
        return isinstance(exc, (ValueError, self.RequestError))

    @staticmethod
    def shutdown(llm: Any) -> None:
        llm.shutdown()
