"""Hugging Face transformers engine: the reference implementation (CPU or GPU).

It decodes with its own batched loop over the model's KV cache, so every request of a batch
keeps its own stop rules (max_tokens, stop strings, stop token ids, EOS, min_tokens, ignore_eos),
its own seeded sampler, and its own per-token timestamps. Semantics follow vLLM's where engines
must agree: stop strings are cut from the text unless ``include_stop_str_in_output``, the stop
token stays in ``token_ids``, ``stop_reason`` is the matched string or id (None for EOS), the stop
string that completes earliest wins (ties: stop-list order), stop strings count only after
``min_tokens`` tokens, ``truncate_prompt_tokens`` keeps the LAST k tokens, a prompt of
``max_model_len`` tokens or more is rejected, and ``max_tokens`` beyond the room left ends with
``finish_reason="length"``. (The truncation suite found each of these where this adapter first
differed from vLLM 0.32; they are pinned by ``tests/test_truncation_e2e.py``.)

Engine args (``[engines.X.args]`` or inline): ``dtype`` ("auto", "float32", "bfloat16", ...),
``device`` ("cpu", "cuda", default: cuda when available), ``max_model_len``, ``batch_size``
(rows decoded together, default 32), and deliberate degradations used to prove that the gate
fails a broken candidate: ``perturb_weights`` (relative Gaussian noise added to every weight,
seeded by ``perturb_seed``), ``on_overlength = "truncate_left"`` (cut over-length prompts to
their last ``max_model_len - 1`` tokens without an error, like TensorRT-LLM's legacy runner),
``chat_template`` (a Jinja template replacing the tokenizer's own: another template version),
``add_bos`` (prepend the BOS token to every prompt on top of what the template or tokenizer puts
there, like a front-end that tokenizes a rendered chat template with ``add_special_tokens=True``),
``eos_token_ids`` (the ids that end an output, replacing the tokenizer's and generation config's),
and ``fault``, one of:

- ``"leak_stop"``: a matched stop *string* stays in the text even when
  ``include_stop_str_in_output`` is False (stop token ids are unaffected);
- ``"extra_token"``: decodes up to ``max_tokens + 1`` tokens, so an output that would finish by
  length carries one token more than asked (a real extra decode step; the room left in
  ``max_model_len`` still caps it).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Optional, Sequence

from ..types import Completion, EngineInfo, EngineLimits, GenerationRequest, Timings, TokenLogprobs
from .base import Capabilities, check_model_dir, EngineSpec, EngineSpecError, ProgressFn

__all__ = ["HFEngine"]

KNOWN_ARGS = {"dtype", "device", "max_model_len", "batch_size", "perturb_weights", "perturb_seed",
              "on_overlength", "trust_remote_code", "fault", "chat_template", "add_bos",
              "eos_token_ids"}
FAULTS = ("leak_stop", "extra_token")  # deliberate faults (see the module docstring)


_check_model_dir = check_model_dir  # kept for callers of the old private name


class HFEngine:
    kind: ClassVar[str] = "hf"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transport="in-process",
        limits_source="engine args max_model_len (else the model config's max_position_embeddings)",
        packages=(("transformers", ("transformers",)), ("torch", ("torch",))),
        embedded_args={"max_model_len": 2048, "dtype": "float32"},
    )

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        return cls.CAPABILITIES

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: Any = None
        self.max_model_len: int = 0
        self.fault: Optional[str] = spec.args.get("fault")

    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        _check_model_dir(spec)
        unknown = set(spec.args) - KNOWN_ARGS
        if unknown:
            raise EngineSpecError(
                f"engine {spec.label!r}: unknown hf engine argument(s) {sorted(unknown)};"
                f" known: {sorted(KNOWN_ARGS)}"
            )
        mode = spec.args.get("on_overlength", "error")
        if mode not in ("error", "truncate_left"):
            raise EngineSpecError(f"engine {spec.label!r}: on_overlength must be 'error' or 'truncate_left', got {mode!r}")
        fault = spec.args.get("fault")
        if fault is not None and fault not in FAULTS:
            raise EngineSpecError(
                f"engine {spec.label!r}: fault must be one of {', '.join(repr(f) for f in FAULTS)}, got {fault!r}"
            )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EngineInfo:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        args = self.spec.args
        device = args.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        dtype_arg = args.get("dtype", "auto")
        dtype = dtype_arg if dtype_arg == "auto" else getattr(torch, str(dtype_arg))
        tok_dir = self.spec.tokenizer or self.spec.target
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=bool(args.get("trust_remote_code")))
        if args.get("chat_template"):
            self.tokenizer.chat_template = str(args["chat_template"])
        self.model = AutoModelForCausalLM.from_pretrained(
            self.spec.target, dtype=dtype, trust_remote_code=bool(args.get("trust_remote_code"))
        ).to(self.device)
        self.model.eval()
        if args.get("perturb_weights"):
            self._perturb(float(args["perturb_weights"]), int(args.get("perturb_seed", 0)))
        cfg = self.model.config
        limit = getattr(cfg, "max_position_embeddings", None) or 2048
        self.max_model_len = int(args.get("max_model_len") or limit)
        eos = self.tokenizer.eos_token_id
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set([eos] if isinstance(eos, int) else (eos or []))
        ids |= set([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
        self.eos_ids = sorted(i for i in ids if i is not None)
        if "eos_token_ids" in args:  # an EOS set read differently (e.g. generation_config ignored)
            self.eos_ids = sorted(int(t) for t in args["eos_token_ids"])
        return EngineInfo(
            kind=self.kind,
            model=str(self.spec.target),
            version=f"transformers {transformers.__version__}, torch {torch.__version__}",
            limits=EngineLimits(max_model_len=self.max_model_len, max_input_len=self.max_model_len,
                                max_batch_size=None),
            details={"dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
                     "device": str(self.device), "batch_size": int(args.get("batch_size", 32)),
                     "timing": "step clock in the worker (same origin for every request of a call)",
                     "perturb_weights": args.get("perturb_weights"),
                     "on_overlength": args.get("on_overlength", "error"), "eos_token_ids": list(self.eos_ids),
                     **({"fault": self.fault} if self.fault else {})},
        )

    def _perturb(self, scale: float, seed: int) -> None:
        import torch

        gen = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            for p in self.model.parameters():
                if p.dtype.is_floating_point and p.numel() > 1:
                    noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                    p.add_((noise * scale * p.float().std().cpu()).to(p.device, p.dtype))

    def close(self) -> None:
        self.model = None

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation --------------------------------------------------------------------------
    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        ids = self._rendered_ids(req)
        doubled = self.spec.args.get("add_bos") and req.prompt_token_ids is None  # a rendered prompt only
        return [self.tokenizer.bos_token_id] + ids if doubled else ids

    def _rendered_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages is not None:
            out = self.tokenizer.apply_chat_template(list(req.messages), tokenize=True, add_generation_prompt=True)
            if isinstance(out, dict) or hasattr(out, "keys"):
                out = out["input_ids"]
            return [int(t) for t in out]
        if req.prompt_token_ids is not None:
            return list(req.prompt_token_ids)
        return list(self.tokenizer(req.prompt)["input_ids"])

    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        origin = time.perf_counter()
        results: list[Optional[Completion]] = [None] * len(requests)
        rows: list[dict[str, Any]] = []
        for i, req in enumerate(requests):
            ids = self._prompt_ids(req)
            warnings: list[str] = []
            if req.truncate_prompt_tokens is not None and len(ids) > req.truncate_prompt_tokens:
                # keep the LAST k tokens, as vLLM (0.32 forces truncation_side="left" for
                # generation) and TensorRT-LLM do
                ids = ids[-req.truncate_prompt_tokens:]
            if len(ids) >= self.max_model_len:
                # no room for a single output token: vLLM rejects a prompt of max_model_len tokens too
                if self.spec.args.get("on_overlength") == "truncate_left":
                    ids = ids[-(self.max_model_len - 1):]
                else:
                    results[i] = Completion.failed(
                        f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                        f"prompt contains {len(ids)} input tokens, which leaves no room for output tokens. "
                        "Please reduce the length of the input prompt.",
                        "ValueError", prompt_token_count=len(ids))
                    continue
            room = self.max_model_len - len(ids)
            asked = req.max_tokens + 1 if self.fault == "extra_token" else req.max_tokens
            rows.append({"index": i, "req": req, "ids": ids, "budget": min(asked, room),
                         "warnings": warnings})
        total = len(requests)
        done = [sum(r is not None for r in results)]
        tokens = [0]

        def tick(n_done: int, n_tokens: int) -> None:
            done[0] += n_done
            tokens[0] += n_tokens
            if progress:
                progress(done[0], total, tokens[0])

        batch_size = int(self.spec.args.get("batch_size", 32))
        rows.sort(key=lambda r: len(r["ids"]))
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            for row, comp in zip(chunk, self._decode_batch(chunk, origin, tick)):
                results[row["index"]] = comp
        if progress:
            progress(total, total, tokens[0])
        return [r for r in results if r is not None]

    def _decode_batch(self, rows: list[dict[str, Any]], origin: float, tick: Any) -> list[Completion]:
        import torch

        B = len(rows)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.eos_ids[0] if self.eos_ids else 0
        width = max(len(r["ids"]) for r in rows)
        input_ids = torch.full((B, width), pad_id, dtype=torch.long)
        mask = torch.zeros((B, width), dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["ids"])
            input_ids[b, width - n:] = torch.tensor(r["ids"], dtype=torch.long)
            mask[b, width - n:] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)

        gens = []
        for r in rows:
            g = torch.Generator(device=self.device)
            g.manual_seed(r["req"].seed if r["req"].seed is not None else 0)
            gens.append(g)
        state = [{"out": [], "times": [], "lps": [], "finish": None, "stop_reason": None, "text_cut": None}
                 for _ in rows]
        active = [r["budget"] > 0 for r in rows]
        for b, r in enumerate(rows):
            if not active[b]:
                state[b]["finish"] = "length"
        past = None
        cur_ids, cur_pos = input_ids, position_ids
        step_mask = mask
        # rows still decoding, by their place in the batch; a finished row leaves the batch (its KV
        # cache rows are dropped), so the rest of the batch no longer pays for it
        live = [b for b in range(B) if active[b]]
        if len(live) < B:
            sel = torch.tensor(live, dtype=torch.long, device=self.device)
            cur_ids, cur_pos, step_mask = cur_ids[sel], cur_pos[sel], step_mask[sel]
        with torch.inference_mode():
            while live:
                # logits of the last position only: the prefill would otherwise project every prompt
                # position onto the vocabulary
                out = self.model(input_ids=cur_ids, attention_mask=step_mask, position_ids=cur_pos,
                                 past_key_values=past, use_cache=True, logits_to_keep=1)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()
                logprobs_all = torch.log_softmax(logits, dim=-1)
                next_tokens = torch.full((len(live),), pad_id, dtype=torch.long, device=self.device)
                for i, b in enumerate(live):
                    req: GenerationRequest = rows[b]["req"]
                    n_out = len(state[b]["out"])
                    if n_out < req.min_tokens:
                        row_logits = logits[i].clone()
                        for t in list(self.eos_ids) + list(req.stop_token_ids):
                            row_logits[t] = float("-inf")
                    else:
                        row_logits = logits[i]
                    if req.greedy:
                        tok = int(torch.argmax(row_logits))
                    else:
                        tok = self._sample(row_logits, req, gens[b])
                    next_tokens[i] = tok
                now = time.perf_counter() - origin
                finished_now, n_new = 0, 0
                keep: list[int] = []
                for i, b in enumerate(live):
                    r = rows[b]
                    req = r["req"]
                    tok = int(next_tokens[i])
                    st = state[b]
                    st["out"].append(tok)
                    st["times"].append(now)
                    n_new += 1
                    if req.logprobs is not None:
                        k = max(req.logprobs, 1)
                        vals, idx = torch.topk(logprobs_all[i], k)
                        top = {int(t): float(v) for t, v in zip(idx.tolist(), vals.tolist())}
                        chosen = float(logprobs_all[i, tok])
                        top.setdefault(tok, chosen)
                        decoded = {t: self.tokenizer.decode([t]) for t in top}
                        st["lps"].append(TokenLogprobs(tok, chosen, top, decoded))
                    reason = self._check_stop(req, st)
                    if reason is None and len(st["out"]) >= r["budget"]:
                        reason = "length"
                    if reason is not None:
                        st["finish"] = reason
                        active[b] = False
                        finished_now += 1
                    else:
                        keep.append(i)
                tick(finished_now, n_new)
                if not keep:
                    break
                cur_ids = next_tokens.unsqueeze(-1)
                step_mask = torch.cat([step_mask, torch.ones((len(live), 1), dtype=step_mask.dtype,
                                                             device=self.device)], dim=-1)
                cur_pos = cur_pos[:, -1:] + 1
                if len(keep) < len(live):
                    sel = torch.tensor(keep, dtype=torch.long, device=self.device)
                    past.batch_select_indices(sel)
                    cur_ids, cur_pos, step_mask = cur_ids[sel], cur_pos[sel], step_mask[sel]
                    live = [live[i] for i in keep]
        return [self._finish(r, st) for r, st in zip(rows, state)]

    @staticmethod
    def _sample(row_logits: Any, req: GenerationRequest, gen: Any) -> int:
        import torch

        logits = row_logits / max(req.temperature, 1e-6)
        if req.top_k and req.top_k > 0:
            kth = torch.topk(logits, min(req.top_k, logits.numel())).values[-1]
            logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
        probs = torch.softmax(logits, dim=-1)
        if req.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_p, dim=-1)
            drop = cum - sorted_p > req.top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
            probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=gen))

    def _check_stop(self, req: GenerationRequest, st: dict[str, Any]) -> Optional[str]:
        tok = st["out"][-1]
        n_out = len(st["out"])
        if n_out <= req.min_tokens and req.min_tokens > 0:
            # vLLM checks stop strings only once more than min_tokens tokens exist (EOS and stop
            # token ids cannot occur before that: they are masked out of the logits)
            if tok in req.stop_token_ids:
                st["stop_reason"] = tok
                return "stop"
            if not req.ignore_eos and tok in self.eos_ids:
                return "stop"
            return None
        if tok in req.stop_token_ids:
            st["stop_reason"] = tok
            return "stop"
        if not req.ignore_eos and tok in self.eos_ids:
            return "stop"
        if req.stop:
            text = self.tokenizer.decode(st["out"], skip_special_tokens=True)
            # only look where the newest token could have completed a stop string
            new_len = len(self.tokenizer.decode(st["out"][:-1], skip_special_tokens=True))
            # as vLLM's check_stop_strings: the stop string that completes earliest wins, ties by
            # the order of the stop list
            best = None
            for s in req.stop:
                pos = text.find(s, max(0, new_len - len(s) + 1))
                if pos != -1 and (best is None or pos + len(s) < best[0] + len(best[1])):
                    best = (pos, s)
            if best is not None:
                pos, s = best
                st["stop_reason"] = s
                keep = req.include_stop_str_in_output or self.fault == "leak_stop"
                st["text_cut"] = text[: pos + len(s)] if keep else text[:pos]
                return "stop"
        return None

    def _finish(self, row: dict[str, Any], st: dict[str, Any]) -> Completion:
        req: GenerationRequest = row["req"]
        out = st["out"]
        if st["text_cut"] is not None:
            text = st["text_cut"]
        else:
            ids = out
            if st["finish"] == "stop" and st["stop_reason"] is not None and not req.include_stop_str_in_output:
                ids = out[:-1]  # a stop token id is not part of the text
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        times = st["times"]
        return Completion(
            text=text,
            token_ids=list(out),
            token_texts=[self.tokenizer.decode([t]) for t in out],
            finish_reason=st["finish"],
            stop_reason=st["stop_reason"],
            logprobs=st["lps"] if req.logprobs is not None else None,
            prompt_token_count=len(row["ids"]),
            prompt_token_ids=list(row["ids"]),
            timings=Timings(ttft=times[0] if times else None, e2e=times[-1] if times else None,
                            token_times=times, source="step-clock"),
            warnings=row["warnings"],
        )
