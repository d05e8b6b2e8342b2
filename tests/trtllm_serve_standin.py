"""A stand-in for ``trtllm-serve``: its HTTP behaviour, per TensorRT-LLM's source, over the
``tensorrt_llm`` contract double (real completions from the embedded model, via transformers).

trtllm-serve is a FastAPI app around ``LLM.generate_async(..., streaming=True)``. This module is
the same shape: FastAPI (as trtllm-serve), pydantic request models with ``extra="forbid"``, the
``to_sampling_params`` logic, the streaming post-processors and the two error shapes, over the
double's ``tensorrt_llm.LLM`` (PyTorch backend) or ``tensorrt_llm._tensorrt_engine.LLM`` (a
compiled engine directory). What it follows, with the facts it comes from
(``pytest_engineparity/engines/data/trtllm-<series>.json``, and the source files they cite):

- routes: ``GET /health``, ``GET /version`` (``{"version": ...}``), ``GET /v1/models`` (one card,
  ``owned_by: "tensorrt_llm"``, id = the model directory's name), ``POST /v1/completions``,
  ``POST /v1/chat/completions``; no ``/tokenize`` (facts ``serve_routes``, ``serve_owned_by``);
- request models forbid unknown fields: a vLLM-only field such as ``return_token_ids`` is an HTTP
  400 with the validation handler's body ``{"error": "<text>"}`` (1.x; 0.17 answered the flat
  ``ErrorResponse``); errors inside a handler (``to_sampling_params``, an over-length prompt) are
  the flat ``{"object": "error", "message", "type", "param", "code"}`` (facts ``serve_error_shape``);
- logprobs (facts ``serve_logprobs_validation``): the PyTorch backend, or an engine with
  ``gather_generation_logits``, returns the top-k asked for; a compiled engine without it refuses
  ``logprobs > 1`` ("`logprobs` must be 1 or `gather_generation_logits` must be `True` to use
  `logprobs` > 1") and returns only the sampled token's logprob for ``logprobs=1``; chat refuses
  ``top_logprobs`` there. 0.17 refuses logprobs on completions ("returning log probs is not
  supported") and ``top_logprobs`` on chat, and ``stream_options``;
- choices carry no token ids unless ``detokenize=false`` (then the text is empty) (facts
  ``serve_response_choice``); completion chunks are dumped with every field (``null`` included),
  chat chunks without ``null`` fields, the first chat chunk carries the role; usage comes in a
  final chunk when ``stream_options.include_usage`` (postprocess_handlers.py);
- 0.17 accepts ``ignore_eos`` and ``truncate_prompt_tokens`` and does not forward them.

Not modelled (an HTTP 400 that says so): n > 1, best_of, beam search, penalties, logit_bias,
response_format, tools, LoRA, disaggregated serving. ``max_tokens`` left unset becomes 16 (the
server deduces it from max_seq_len).

Run: ``python tests/trtllm_serve_standin.py MODEL_OR_ENGINE_DIR --backend pytorch|tensorrt
[--tokenizer DIR] [--version 1.2.1] [--gather_generation_logits] [--port 0]``; it prints
``STANDIN_URL=http://127.0.0.1:<port>`` once it listens. ``running_standin(...)`` does that for
tests. ``write_engine_dir(...)`` makes a compiled-engine directory for the double from the
embedded model, optionally with degraded weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Union

HERE = Path(__file__).resolve().parent
DOUBLE_DIR = HERE / "trtllm_double"
DEFAULT_VERSION = "1.2.1"

_NOT_MODELLED = {"n": (None, 1), "best_of": (None, 1), "use_beam_search": (None, False),
                 "frequency_penalty": (None, 0.0), "presence_penalty": (None, 0.0),
                 "repetition_penalty": (None, 1.0), "logit_bias": (None,), "response_format": (None,),
                 "lora_request": (None,), "disaggregated_params": (None,), "tools": (None,),
                 "length_penalty": (None, 1.0), "min_p": (None, 0.0), "echo": (None, False)}


# ------------------------------------------------------------------------------------------------
# the engine directory and the process


def write_engine_dir(dst: Path, hf_dir: Path, *, perturb: float = 0.0, seed: int = 1,
                     max_seq_len: int = 2048, gather_generation_logits: bool = False,
                     version: str = DEFAULT_VERSION) -> Path:
    """A compiled-engine directory for the double (config.json with ``pretrained_config`` and
    ``build_config``; ``rank0.engine`` = the weights), from the embedded model; ``perturb`` adds
    relative Gaussian noise to every weight (a broken build), seeded."""
    from trtllm_engine_dirs import make_engine_dir  # the layout the adapter tests use

    root = make_engine_dir(dst, hf_dir, gather_generation_logits=gather_generation_logits, version=version,
                           max_seq_len=max_seq_len, max_input_len=max_seq_len - 1, max_batch_size=256,
                           max_num_tokens=8192)
    if perturb:
        import torch
        from safetensors.torch import load_file, save_file

        state = load_file(str(hf_dir / "model.safetensors"))
        gen = torch.Generator().manual_seed(seed)
        for name, t in state.items():
            if t.dtype.is_floating_point and t.numel() > 1:
                noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
                state[name] = (t.float() + noise * perturb * t.float().std()).to(t.dtype).contiguous()
        (root / "rank0.engine").unlink()
        save_file(state, str(root / "rank0.engine"))
    return root


@contextlib.contextmanager
def running_standin(model: Path, *, backend: str, tokenizer: Optional[Path] = None,
                    version: str = DEFAULT_VERSION, gather_generation_logits: bool = False,
                    log_path: Optional[Path] = None, timeout: float = 300) -> Iterator[str]:
    """Start the stand-in in its own process; yield its base URL (without /v1); stop it."""
    cmd = [sys.executable, str(Path(__file__)), str(model), "--backend", backend, "--version", version]
    if tokenizer is not None:
        cmd += ["--tokenizer", str(tokenizer)]
    if gather_generation_logits:
        cmd.append("--gather_generation_logits")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    log = open(log_path, "w+b") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
    try:
        url = None
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while url is None:
            line = proc.stdout.readline().decode()
            if line.startswith("STANDIN_URL="):
                url = line.split("=", 1)[1].strip()
            elif not line and proc.poll() is not None:
                tail = ""
                if log_path is not None:
                    tail = Path(log_path).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"trtllm-serve stand-in exited with {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("trtllm-serve stand-in did not start in time")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if log_path is not None and hasattr(log, "close"):
            log.close()


# ------------------------------------------------------------------------------------------------
# the server


def build_app(llm: Any, model_name: str, backend: str, gather_generation_logits: bool, version: str) -> Any:
    """The FastAPI app of trtllm-serve over ``llm`` (module docstring)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    import tensorrt_llm
    from tensorrt_llm._versions import SERIES

    old = SERIES == "0.17"
    tokenizer = llm.tokenizer

    class OpenAIBaseModel(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class StreamOptions(OpenAIBaseModel):
        include_usage: Optional[bool] = True
        continuous_usage_stats: Optional[bool] = False

    class _Common(OpenAIBaseModel):
        model: Optional[str] = None
        best_of: Optional[int] = None
        frequency_penalty: Optional[float] = 0.0
        logit_bias: Optional[dict] = None
        n: int = 1
        presence_penalty: Optional[float] = 0.0
        seed: Optional[int] = None
        stop: Optional[Union[str, list]] = Field(default_factory=list)
        stream: Optional[bool] = False
        stream_options: Optional[StreamOptions] = None
        temperature: Optional[float] = None
        top_p: Optional[float] = None
        user: Optional[str] = None
        lora_request: Optional[Any] = None
        use_beam_search: bool = False
        top_k: int = 0
        top_p_min: float = 0.0
        min_p: float = 0.0
        repetition_penalty: float = 1.0
        length_penalty: float = 1.0
        early_stopping: bool = False
        stop_token_ids: Optional[list] = Field(default_factory=list)
        include_stop_str_in_output: bool = False
        ignore_eos: bool = False
        min_tokens: int = 0
        skip_special_tokens: bool = True
        spaces_between_special_tokens: bool = True
        truncate_prompt_tokens: Optional[int] = Field(default=None, ge=1)
        response_format: Optional[Any] = None
        disaggregated_params: Optional[Any] = None
        priority: Optional[float] = None
        thinking_token_budget: Optional[int] = None

        @model_validator(mode="before")
        @classmethod
        def validate_stream_options(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("stream_options") is not None:
                if old:
                    raise ValueError("stream_options is not supported")
                if not data.get("stream"):
                    raise ValueError("Stream options can only be defined when stream is true.")
            return data

    class CompletionRequest(_Common):
        prompt: Union[str, list]
        echo: Optional[bool] = False
        logprobs: Optional[int] = None
        max_tokens: Optional[int] = None
        suffix: Optional[str] = None
        prompt_ignore_length: Optional[int] = 0
        return_context_logits: bool = False
        detokenize: bool = True
        add_special_tokens: bool = True
        conversation_params: Optional[Any] = None

        @model_validator(mode="before")
        @classmethod
        def check_logprobs(cls, data: Any) -> Any:
            if isinstance(data, dict):
                if old and (data.get("logprobs") or data.get("top_logprobs")):
                    raise ValueError("returning log probs is not supported")
                if (lp := data.get("logprobs")) is not None and lp < 0:
                    raise ValueError("logprobs must be positive or zero")
            return data

        @model_validator(mode="before")
        @classmethod
        def check_suffix(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("suffix"):
                raise ValueError("suffix is not supported")
            return data

    class ChatCompletionRequest(_Common):
        messages: list
        logprobs: Optional[bool] = False
        top_logprobs: Optional[int] = 0
        max_completion_tokens: Optional[int] = Field(default=None, validation_alias="max_tokens")
        tools: Optional[list] = None
        tool_choice: Optional[Any] = None
        echo: Optional[bool] = False
        add_generation_prompt: bool = True
        add_special_tokens: bool = False
        chat_template: Optional[str] = None
        chat_template_kwargs: Optional[dict] = None
        cache_salt: Optional[str] = None
        reasoning_effort: Optional[str] = None

        @model_validator(mode="before")
        @classmethod
        def check_logprobs(cls, data: Any) -> Any:
            if isinstance(data, dict) and old and data.get("top_logprobs"):
                raise ValueError("top_logprobs is not supported")
            return data

    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def validation_exception_handler(_: Any, exc: Any) -> Any:
        if old:  # 0.17: the flat ErrorResponse (facts serve_error_shape)
            return error_response(str(exc))
        return JSONResponse(status_code=400, content={"error": str(exc)})

    def error_response(message: str, err_type: str = "BadRequestError", code: int = 400) -> Any:
        return JSONResponse(status_code=code, content={"object": "error", "message": message, "type": err_type,
                                                       "param": None, "code": code})

    def not_modelled(req: Any) -> Optional[str]:
        for name, neutral in _NOT_MODELLED.items():
            if name in req.model_fields_set and getattr(req, name, None) not in neutral:
                return f"{name}={getattr(req, name)!r} is not modelled by the trtllm-serve stand-in"
        return None

    def sampling_params(req: Any, chat: bool) -> Any:
        """to_sampling_params (openai_protocol.py), for this backend and logits setting."""
        sp_kwargs: dict[str, Any] = dict(
            max_tokens=(req.max_completion_tokens if chat else req.max_tokens) or 16,
            seed=req.seed, stop=req.stop or None,
            temperature=req.temperature if req.temperature is not None else 1.0,
            top_p=req.top_p if req.top_p is not None else 1.0,
            top_k=req.top_k, stop_token_ids=req.stop_token_ids or None,
            include_stop_str_in_output=req.include_stop_str_in_output,
            min_tokens=req.min_tokens or None, skip_special_tokens=req.skip_special_tokens,
            add_special_tokens=req.add_special_tokens,
        )
        if not chat:
            sp_kwargs["detokenize"] = req.detokenize
        if not old:  # 0.17 accepts these and does not forward them (facts serve_completion_fields)
            sp_kwargs.update(ignore_eos=req.ignore_eos, truncate_prompt_tokens=req.truncate_prompt_tokens)
        return_log_probs = False
        if chat:
            if req.logprobs:
                k = req.top_logprobs or 1
                if backend == "pytorch" or gather_generation_logits:
                    sp_kwargs["logprobs"] = k
                elif req.top_logprobs:
                    raise ValueError("`gather_generation_logits` must be `True` to use `top_logprobs`")
                else:
                    return_log_probs = True
        elif req.logprobs:
            if backend == "pytorch" or gather_generation_logits:
                sp_kwargs["logprobs"] = req.logprobs
            elif req.logprobs > 1:
                raise ValueError("`logprobs` must be 1 or `gather_generation_logits` must be `True` to use `logprobs` > 1")
            else:
                return_log_probs = True
        sp = tensorrt_llm.SamplingParams(**sp_kwargs)
        if return_log_probs:
            sp._return_log_probs = True
        return sp

    @app.get("/health")
    async def health() -> Any:
        return Response(status_code=200)

    @app.get("/version")
    async def version_route() -> Any:
        return JSONResponse(content={"version": version})

    @app.get("/v1/models")
    async def models() -> Any:
        return JSONResponse(content={"object": "list", "data": [
            {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "tensorrt_llm"}]})

    def completion_logprobs(ids: list, lps: list, offset: int) -> dict:
        text_offset, token_logprobs, tokens, tops = [], [], [], []
        for tid, lp in zip(ids, lps):
            if isinstance(lp, dict):
                token_logprobs.append(max(lp[tid].logprob, -9999.0))
                tops.append({tokenizer.decode([t]): max(v.logprob, -9999.0) for t, v in lp.items()})
            else:
                token_logprobs.append(max(lp, -9999.0))
            token = tokenizer.decode([tid])
            text_offset.append(offset if not text_offset else text_offset[-1] + len(token))
            tokens.append(token)
        return {"text_offset": text_offset, "token_logprobs": token_logprobs, "tokens": tokens, "top_logprobs": tops}

    def chat_logprobs(ids: list, lps: list, top: bool) -> dict:
        content = []
        for tid, lp in zip(ids, lps):
            token = tokenizer.decode([tid])
            item: dict[str, Any] = {"token": token, "bytes": list(token.encode("utf-8", errors="replace")),
                                    "top_logprobs": []}
            if isinstance(lp, dict):
                if tid in lp:
                    item["logprob"] = max(lp[tid].logprob, -9999.0)
                    if top:
                        item["top_logprobs"] = [
                            {"token": (t := tokenizer.decode([i])), "logprob": max(v.logprob, -9999.0),
                             "bytes": list(t.encode("utf-8", errors="replace"))} for i, v in lp.items()]
            else:
                item["logprob"] = max(lp, -9999.0)
            content.append(item)
        return {"content": content}

    def usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": 0}}

    async def run(req: Any, chat: bool) -> Any:
        problem = not_modelled(req)
        if problem:
            return error_response(problem)
        try:
            sp = sampling_params(req, chat)
            if chat:
                prompt: Any = tokenizer.apply_chat_template(list(req.messages), tokenize=False,
                                                            add_generation_prompt=req.add_generation_prompt)
            else:
                prompt = req.prompt
                if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt):
                    if len(prompt) != 1:
                        return error_response("several prompts in one request are not modelled by the stand-in")
                    prompt = prompt[0]
            promise = llm.generate_async(prompt, sp, streaming=bool(req.stream))
        except Exception as exc:  # the handler's own errors: the flat ErrorResponse
            return error_response(str(exc))
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(stream(promise, req, chat, include_usage), media_type="text/event-stream")
        try:
            final = await promise.aresult()
        except Exception as exc:
            return error_response(str(exc))
        return JSONResponse(content=full_response(final, req, chat))

    def full_response(final: Any, req: Any, chat: bool) -> dict:
        out = final.outputs[0]
        lps = list(out.logprobs or [])
        n_prompt = len(final.prompt_token_ids)
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": out.text},
                                      "logprobs": chat_logprobs(out.token_ids, lps, bool(req.top_logprobs))
                                      if req.logprobs else None,
                                      "finish_reason": out.finish_reason, "stop_reason": out.stop_reason}
            obj, prefix = "chat.completion", "chatcmpl"
        else:
            choice = {"index": 0, "text": out.text if req.detokenize else "",
                      "token_ids": None if req.detokenize else list(out.token_ids),
                      "logprobs": completion_logprobs(out.token_ids, lps, 0) if req.logprobs else None,
                      "context_logits": None, "finish_reason": out.finish_reason, "stop_reason": out.stop_reason,
                      "disaggregated_params": None, "avg_decoded_tokens_per_iter": None}
            obj, prefix = "text_completion", "cmpl"
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()),
                "model": model_name, "choices": [choice], "usage": usage(n_prompt, len(out.token_ids))}

    async def stream(promise: Any, req: Any, chat: bool, include_usage: bool) -> Any:
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        sent_text = sent_ids = sent_lps = 0
        if chat:  # the first chunk: the role, dumped with exclude_none -- and a space before \n\n
            first = {"id": rid, "object": obj, "created": created, "model": model_name,
                     "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
            yield f"data: {json.dumps(first)} \n\n"
        last = None
        try:
            async for partial in promise:
                last = partial
                out = partial.outputs[0]
                text_diff = out.text[sent_text:]
                ids_diff = list(out.token_ids[sent_ids:])
                lps_diff = list((out.logprobs or [])[sent_lps:])
                sent_text, sent_ids, sent_lps = len(out.text), len(out.token_ids), len(out.logprobs or [])
                if chat:
                    if not (text_diff or out.finish_reason or ids_diff):
                        continue
                    choice: dict[str, Any] = {"index": 0, "delta": {"content": text_diff}}
                    if req.logprobs:
                        choice["logprobs"] = chat_logprobs(ids_diff, lps_diff, bool(req.top_logprobs))
                    if out.finish_reason is not None:
                        choice["finish_reason"] = out.finish_reason
                    if out.stop_reason is not None:
                        choice["stop_reason"] = out.stop_reason
                    chunk = {"id": rid, "object": obj, "created": created, "model": model_name, "choices": [choice]}
                else:  # dumped with every field, null included (exclude_unset=False)
                    choice = {"index": 0, "text": text_diff if req.detokenize else "",
                              "token_ids": None if req.detokenize else ids_diff,
                              "logprobs": completion_logprobs(ids_diff, lps_diff, sent_text - len(text_diff))
                              if req.logprobs else None,
                              "context_logits": None, "finish_reason": out.finish_reason,
                              "stop_reason": out.stop_reason, "disaggregated_params": None,
                              "avg_decoded_tokens_per_iter": None}
                    chunk = {"id": rid, "object": obj, "created": created, "model": model_name,
                             "choices": [choice], "usage": None}
                yield f"data: {json.dumps(chunk)}\n\n"
        except Exception as exc:  # the executor failed the request mid-stream
            yield f"data: {json.dumps({'object': 'error', 'message': str(exc), 'type': 'InternalServerError', 'param': None, 'code': 500})}\n\n"
        if include_usage and last is not None:
            n_out = len(last.outputs[0].token_ids)
            final = {"id": rid, "object": obj, "created": created, "model": model_name, "choices": [],
                     "usage": usage(len(last.prompt_token_ids), n_out)}
            yield f"data: {json.dumps(final)}\n\n"
        yield "data: [DONE]\n\n"

    # FastAPI validates the body against the request models (extra="forbid"): a violation is a
    # RequestValidationError, answered by the handler above, as in trtllm-serve
    async def completions(request: CompletionRequest) -> Any:
        return await run(request, chat=False)

    async def chat_completions(request: ChatCompletionRequest) -> Any:
        return await run(request, chat=True)

    # the models are local classes: give FastAPI the objects (this module's annotations are strings)
    completions.__annotations__ = {"request": CompletionRequest, "return": Any}
    chat_completions.__annotations__ = {"request": ChatCompletionRequest, "return": Any}
    app.add_api_route("/v1/completions", completions, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    return app


def main(argv: Optional[list] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a Hugging Face checkpoint (pytorch) or an engine directory (tensorrt)")
    ap.add_argument("--backend", choices=("pytorch", "tensorrt"), default="pytorch")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--version", default=DEFAULT_VERSION, help="the TensorRT-LLM version the double plays")
    ap.add_argument("--gather_generation_logits", action="store_true")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)

    os.environ["TRTLLM_DOUBLE_VERSION"] = args.version
    sys.path.insert(0, str(DOUBLE_DIR))
    import torch
    import uvicorn

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from tensorrt_llm._versions import TRAITS

    kwargs = {"gather_generation_logits": True} if args.gather_generation_logits else {}
    if args.backend == "pytorch":
        from tensorrt_llm import LLM
        llm = LLM(model=args.model, tokenizer=args.tokenizer)
    elif not TRAITS.has_tensorrt_engine_module:  # 0.17: tensorrt_llm.LLM is the TensorRT class
        from tensorrt_llm import LLM
        llm = LLM(model=args.model, tokenizer=args.tokenizer, **kwargs)
    else:  # trtllm-serve imports it as: from tensorrt_llm._tensorrt_engine import LLM
        from tensorrt_llm._tensorrt_engine import LLM as TrtLLM
        llm = TrtLLM(model=args.model, tokenizer=args.tokenizer, **kwargs)
    app = build_app(llm, Path(args.model).name, args.backend, args.gather_generation_logits, args.version)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=5)
    server = uvicorn.Server(config)

    async def serve() -> None:
        import asyncio

        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.05)
        print(f"STANDIN_URL=http://{args.host}:{sock.getsockname()[1]}", flush=True)
        await task

    import asyncio

    try:
        asyncio.run(serve())
    finally:
        llm.shutdown()


if __name__ == "__main__":
    main()
