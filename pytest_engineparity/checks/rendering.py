"""The rendering family (``engine_pair.rendering``): did both engines see the same prompt, and do
they stop the same way?

The most common cause of "the new engine answers differently" in a migration is the request, not
the math: a chat template applied on one side only or in another version, BOS added twice or not
at all, an EOS list read from ``generation_config.json`` on one side only, special tokens left in
the output text. The answers often stay fluent, so a similarity check passes them. Three checks:

``prompt-parity``
    Per suite request, the prompt token ids each engine used (``Completion.prompt_token_ids``), or
    where an engine returns only a count (``usage.prompt_tokens``) that count. A difference is a
    failing finding on that request, shown with both renderings aligned at the first differing
    token, decoded, and named where recognisable: BOS doubled / missing / added, a default system
    prompt on one side only, a system prompt dropped, the generation prompt, the same text
    tokenized differently, else "chat template differs" / "tokenization differs".
``rendering-preflight``
    A handful of chat and completion requests (:func:`preflight_requests`), registered as
    auxiliary requests (they ride the suite batch when it has not run yet, else go as one small
    batch of their own) and judged the same way; a mismatch is reported once, plainly.
``termination-parity``
    1. The EOS each engine honours, where it shows: both produced the same tokens up to one
       engine's EOS stop and the other generated that same EOS token and went on, or stopped on
       a token the other generated and went past. A measured difference, per request.
    2. Special tokens (``<|im_end|>``, ``</s>``, ...) in the output *text* of one engine only.
    3. Over the suite, paired: exact McNemar on "stopped vs ran to max_tokens" and Wilcoxon
       signed-rank on output lengths, each at half the alpha share of one statistical decision
       (``cfg.alpha_per_decision``); ``fail`` needs the test and an effect beyond the margin,
       ``pass`` needs both shown within the margins (TOST: the stop rates within
       ``max_stop_rate_difference``, a bootstrap CI of the ratio of mean lengths within
       ``max_length_ratio``), else ``inconclusive`` with the requests it would need.
    Each engine's EOS set is listed where it is knowable: declared by the adapter
    (``EngineInfo.details["eos_token_ids"]``), read from the model files, and observed (the token
    ids that ended its EOS stops).

Decoding: ids are shown as text through the tokenizer files where an engine's spec points at a
local directory (``tokenizer.json``: vocabulary, added and special tokens, BOS / EOS from the
configs), else through the pieces the engines returned for their outputs; an unknown id shows as
``<id N>``. Everything except :class:`RenderingChecks` is plain functions over requests and
completions, tested on recorded data without engines.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence

from ..errors import ParityMismatch
from ..types import Completion, GenerationRequest
from .verdicts import FAIL, INCONCLUSIVE, PASS, SHARED, SKIP, WARN, worst_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import CheckContext

__all__ = [
    "CHECK_PROMPT", "CHECK_PREFLIGHT", "CHECK_TERMINATION", "SAME", "DIFFERS", "UNCHECKED",
    "TokenizerFacts", "tokenizer_facts", "Decoder", "preflight_requests",
    "PromptCheck", "judge_prompt", "name_difference", "name_count_difference", "aligned_lines",
    "summarize_prompts", "EosFinding", "judge_eos", "special_tokens_in", "TerminationStats",
    "termination_stats", "FamilyResult", "html_section", "RenderingChecks",
]

CHECK_PROMPT = "prompt-parity"
CHECK_PREFLIGHT = "rendering-preflight"
CHECK_TERMINATION = "termination-parity"
ROLES = ("reference", "candidate")
SAME, DIFFERS, UNCHECKED = "same", "differs", "unchecked"

# special tokens of common chat models, looked for in output text besides the tokenizer's own
WELL_KNOWN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>",
                       "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "</s>",
                       "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<start_of_turn>",
                       "<end_of_turn>", "[INST]", "[/INST]", "<|return|>", "<|start|>", "<|channel|>")


# ============================================================================================
# tokenizer files and decoding


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable-unicode table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


_BYTE_DECODER: dict[str, int] = {v: k for k, v in _bytes_to_unicode().items()}


def _piece_bytes(piece: str, byte_level: bool) -> bytes:
    if byte_level:
        try:
            return bytes(_BYTE_DECODER[ch] for ch in piece)
        except KeyError:
            return piece.encode("utf-8")
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):  # sentencepiece byte token
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace("▁", " ").encode("utf-8")


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _token_str(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


@dataclass
class TokenizerFacts:
    """What a local Hugging Face tokenizer directory says, read as plain JSON (no transformers)."""

    path: str
    pieces: dict = field(default_factory=dict)  # id -> bytes
    special: dict = field(default_factory=dict)  # id -> text of the special/added token
    bos_ids: list = field(default_factory=list)
    eos_ids: list = field(default_factory=list)


def tokenizer_facts(path: Optional[str]) -> Optional[TokenizerFacts]:
    """The vocabulary, special tokens, BOS and EOS ids of the tokenizer in ``path`` (a directory
    with ``tokenizer.json`` and/or ``tokenizer_config.json``, ``config.json``,
    ``generation_config.json``); None when ``path`` is not such a directory."""
    if not path or not os.path.isdir(path):
        return None

    def load(name: str) -> dict:
        p = os.path.join(path, name)
        try:
            with open(p, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    tj, tc = load("tokenizer.json"), load("tokenizer_config.json")
    if not tj and not tc:
        return None
    facts = TokenizerFacts(path)
    byte_level = "ByteLevel" in json.dumps(tj.get("decoder") or {})
    vocab = (tj.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        for piece, i in vocab.items():
            if isinstance(i, int):
                facts.pieces[i] = _piece_bytes(piece, byte_level)
    elif isinstance(vocab, list):  # unigram: [[piece, score], ...]
        for i, entry in enumerate(vocab):
            piece = entry[0] if isinstance(entry, list) and entry else entry
            if isinstance(piece, str):
                facts.pieces[i] = _piece_bytes(piece, byte_level)
    added = [(t.get("id"), t.get("content"), t.get("special")) for t in tj.get("added_tokens") or [] if isinstance(t, dict)]
    added += [(int(k), v.get("content"), v.get("special")) for k, v in (tc.get("added_tokens_decoder") or {}).items()
              if isinstance(v, dict) and str(k).isdigit()]
    by_text: dict[str, int] = {}
    for i, content, special in added:
        if isinstance(i, int) and isinstance(content, str):
            facts.pieces[i] = content.encode("utf-8")
            by_text[content] = i
            if special:
                facts.special[i] = content
    bos, eos = set(), set()
    for cfg in (load("config.json"), load("generation_config.json")):
        bos.update(_ids(cfg.get("bos_token_id")))
        eos.update(_ids(cfg.get("eos_token_id")))
    for key, into in (("bos_token", bos), ("eos_token", eos)):
        text = _token_str(tc.get(key))
        if text is not None and text in by_text:
            into.add(by_text[text])
    facts.bos_ids, facts.eos_ids = sorted(bos), sorted(eos)
    return facts


class Decoder:
    """Token id -> text for one engine: its tokenizer files where known, else the pieces it
    returned with its outputs. ``show`` never fails: an unknown id is ``<id N>``."""

    def __init__(self, facts: Optional[TokenizerFacts] = None, seen: Optional[Mapping[int, str]] = None):
        self._bytes: dict[int, bytes] = dict(facts.pieces) if facts else {}
        self.special: dict[int, str] = dict(facts.special) if facts else {}
        self.bos_ids: set = set(facts.bos_ids) if facts else set()
        self.eos_ids: set = set(facts.eos_ids) if facts else set()
        self.source = f"tokenizer files in {facts.path}" if facts and facts.pieces else "pieces seen in outputs"
        for i, text in (seen or {}).items():
            self._bytes.setdefault(int(i), text.encode("utf-8"))

    @classmethod
    def from_completions(cls, facts: Optional[TokenizerFacts], completions: Iterable[Completion]) -> "Decoder":
        seen: dict[int, str] = {}
        for c in completions:
            if c.token_texts is not None:
                for t, s in zip(c.token_ids, c.token_texts):
                    if s is not None:
                        seen.setdefault(int(t), str(s))
            for lp in c.logprobs or ():
                for t, s in (lp.decoded or {}).items():
                    seen.setdefault(int(t), str(s))
        return cls(facts, seen)

    def known(self, token_id: int) -> bool:
        return int(token_id) in self._bytes

    def piece(self, token_id: int) -> Optional[str]:
        b = self._bytes.get(int(token_id))
        return None if b is None else b.decode("utf-8", errors="replace")

    def show(self, token_id: int) -> str:
        p = self.piece(token_id)
        return f"<id {int(token_id)}>" if p is None else repr(p)

    def text(self, ids: Sequence[int]) -> str:
        """The ids joined as text (bytes first, so multi-byte characters split over tokens come
        out whole); unknown ids as ``<id N>``."""
        out, buf = [], b""
        for t in ids:
            b = self._bytes.get(int(t))
            if b is None:
                out.append(buf.decode("utf-8", errors="replace") + f"<id {int(t)}>")
                buf = b""
            else:
                buf += b
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


# ============================================================================================
# the pre-flight requests


def preflight_requests(max_tokens: int = 8) -> list[GenerationRequest]:
    """A handful of chat and completion requests that exercise rendering: a chat turn with and
    without a system prompt, a multi-turn chat, plain completions (one opening with a newline)."""
    p = "rendering/preflight-"

    def chat(rid: str, *turns: tuple[str, str]) -> GenerationRequest:
        return GenerationRequest(messages=tuple({"role": r, "content": c} for r, c in turns),
                                 max_tokens=max_tokens, logprobs=None, id=p + rid)

    return [
        chat("chat", ("user", "Hello! Who are you?")),
        chat("chat-system", ("system", "You are a terse assistant. Answer in one word."),
             ("user", "What colour is the sky on a clear day?")),
        chat("chat-multi-turn", ("user", "Name a fruit."), ("assistant", "Apple."), ("user", "Name another one.")),
        GenerationRequest(prompt="The capital of France is", max_tokens=max_tokens, logprobs=None, id=p + "completion"),
        GenerationRequest(prompt="\nQ: What is 2 + 2?\nA:", max_tokens=max_tokens, logprobs=None,
                          id=p + "completion-newline"),
    ]


# ============================================================================================
# prompt parity: one request


@dataclass
class PromptCheck:
    """One request's renderings compared."""

    label: str
    key: str
    request_kind: str  # "chat" | "text" | "tokens"
    status: str  # SAME | DIFFERS | UNCHECKED
    basis: str = ""  # "ids" (token ids compared) | "count" (only prompt token counts)
    name: str = ""  # what differs, in words
    position: Optional[int] = None  # first differing token (ids basis)
    counts: dict = field(default_factory=dict)  # role -> prompt token count
    lines: list = field(default_factory=list)  # both renderings, aligned at the first difference
    why: str = ""  # why the request could not be checked

    def describe(self) -> str:
        if self.status == UNCHECKED:
            return f"{self.label} ({self.request_kind}): not checked: {self.why}"
        counts = f"reference {self.counts.get('reference')} tokens, candidate {self.counts.get('candidate')}"
        if self.status == SAME:
            return f"{self.label} ({self.request_kind}): same prompt ({self.basis}; {counts})"
        where = f"first difference at token {self.position}; " if self.position is not None else ""
        return f"{self.label} ({self.request_kind}): {self.name} ({where}{counts})"

    def message(self) -> str:
        return "\n".join([self.describe()] + list(self.lines))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rendering(c: Completion) -> tuple[Optional[list[int]], Optional[int]]:
    ids = [int(t) for t in c.prompt_token_ids] if c.prompt_token_ids is not None else None
    return ids, (len(ids) if ids is not None else c.prompt_token_count)


def _split(r: Sequence[int], c: Sequence[int]) -> tuple[int, list[int], list[int]]:
    """(length of the common prefix, the reference's differing middle, the candidate's)."""
    n = min(len(r), len(c))
    p = 0
    while p < n and r[p] == c[p]:
        p += 1
    s = 0
    while s < n - p and r[len(r) - 1 - s] == c[len(c) - 1 - s]:
        s += 1
    return p, list(r[p:len(r) - s]), list(c[p:len(c) - s])


def _lead_name(r: Sequence[int], c: Sequence[int], bos: set, show: Callable[[int], str]) -> Optional[str]:
    """BOS doubled / missing / added: one token more on one side at the very start, nothing else."""
    p, rm, cm = _split(r, c)
    for side, longer, mid_long, mid_short in (("candidate", c, cm, rm), ("reference", r, rm, cm)):
        if mid_short or len(mid_long) != 1 or p > 1:
            continue
        t = mid_long[0]
        if p == 1 and longer[0] != t:
            continue  # a token inserted after the first one: not about BOS
        is_bos = t in bos
        what = "BOS" if is_bos else f"first token {show(t)}"
        if len(longer) > 1 and longer[0] == longer[1] == t:
            if side == "candidate":
                return f"{what} doubled on the candidate (its prompt starts with {show(t)} twice, the reference's once)"
            return f"{what} doubled on the reference (the candidate's prompt starts with {show(t)} once)"
        if not is_bos and bos:
            continue
        if side == "candidate":
            return (f"BOS added by the candidate ({show(t)} first, where the reference has none)" if is_bos
                    else f"the candidate adds a leading token {show(t)} the reference does not have")
        return (f"BOS missing on the candidate (the reference starts with {show(t)}, the candidate does not)" if is_bos
                else f"the candidate lacks the reference's leading token {show(t)}")
    return None


def name_difference(req: GenerationRequest, r: Sequence[int], c: Sequence[int], bos: set,
                    dec_r: Decoder, dec_c: Decoder) -> str:
    """Name the difference between two renderings of ``req`` (the reference's ``r``, the
    candidate's ``c``) where it is recognisable."""
    lead = _lead_name(r, c, bos, dec_c.show)
    if lead:
        return lead
    p, rm, cm = _split(r, c)
    mr, mc = dec_r.text(rm), dec_c.text(cm)
    same_text = bool(mr or mc) and mr == mc and all(map(dec_r.known, rm)) and all(map(dec_c.known, cm))
    at_end = p + len(rm) == len(r) and p + len(cm) == len(c) and p > 0
    if req.kind == "chat":
        systems = [m["content"] for m in req.messages or () if m.get("role") == "system" and m.get("content")]
        tr, tc = dec_r.text(r), dec_c.text(c)
        for s in systems:
            if s in tr and s not in tc:
                return "system prompt dropped by the candidate (chat template differs)"
            if s in tc and s not in tr:
                return "system prompt dropped by the reference (chat template differs)"
        if not systems:
            if "system" in mr and "system" not in mc:
                return (f"chat template differs: the reference's template adds a default system prompt "
                        f"({_clip(mr)!r}), the candidate's does not")
            if "system" in mc and "system" not in mr:
                return (f"chat template differs: the candidate's template adds a default system prompt "
                        f"({_clip(mc)!r}), the reference's does not")
        if same_text:
            return "same text, tokenized differently (special tokens split or parsed differently)"
        if at_end:
            return f"chat template differs at the end (generation prompt): reference {_clip(mr)!r}, candidate {_clip(mc)!r}"
        return "chat template differs"
    if same_text:
        return "same text, tokenized differently"
    if req.kind == "tokens":
        return "the given prompt token ids were changed by one engine"
    return "tokenization differs"


def name_count_difference(req: GenerationRequest, counts: Mapping[str, int], ids: Mapping[str, Optional[list]],
                          bos: set, show: Callable[[int], str], names: Mapping[str, str],
                          body_len: Optional[Callable[[str], Optional[int]]] = None,
                          text_of: Optional[Callable[[str, Sequence[int]], str]] = None) -> str:
    """Name a difference seen in prompt token counts only (a side returned no ids)."""
    rc, cc = counts["reference"], counts["candidate"]
    delta = cc - rc
    r_ids, c_ids = ids.get("reference"), ids.get("candidate")
    for side, own, sign in (("candidate", c_ids, 1), ("reference", r_ids, -1)):
        if delta == sign and own and len(own) > 1 and own[0] == own[1] and (not bos or own[0] in bos):
            what = "BOS" if own[0] in bos else f"first token {show(own[0])}"
            return f"{what} doubled on the {side} (its prompt starts with {show(own[0])} twice; one token more)"
    if req.kind == "text" and body_len is not None:
        br, bc = body_len("reference"), body_len("candidate")
        if br is not None and bc is not None:
            if br != bc:
                return f"tokenization differs: the prompt text is {br} tokens for the reference, {bc} for the candidate"
            ar, ac = rc - br, cc - bc
            if ac == ar + 1 and c_ids and (c_ids[0] in bos or not bos):
                return f"BOS added by the candidate ({show(c_ids[0])} first; it adds {ac} special token(s), the reference {ar})"
            if ac == ar - 1 and r_ids and (r_ids[0] in bos or not bos):
                return f"BOS missing on the candidate (the reference adds {show(r_ids[0])}; {ar} vs {ac} special tokens)"
            return (f"special tokens added differ: the reference adds {ar}, the candidate {ac} "
                    f"({'BOS added or doubled' if ac > ar else 'BOS missing'} on the candidate?)")
    lacking = [f"{role} {names.get(role, role)!r}" for role in ROLES if ids.get(role) is None]
    kind = "chat template differs" if req.kind == "chat" else "tokenization differs"
    extra = ""
    if req.kind == "chat" and text_of is not None and not any(m.get("role") == "system" for m in req.messages or ()):
        for side, own in (("candidate", c_ids), ("reference", r_ids)):
            if own is not None and "system" not in text_of(side, own):
                extra = f"; the {side}'s rendering has no system turn"
    return (f"{kind}: the candidate's prompt is {abs(delta)} token(s) {'longer' if delta > 0 else 'shorter'}"
            f"{extra} ({' and '.join(lacking)} returned no prompt token ids to align)")


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def aligned_lines(r: Sequence[int], c: Sequence[int], pos: int, dec_r: Decoder, dec_c: Decoder,
                  names: Mapping[str, str], before: int = 6, after: int = 10) -> list[str]:
    """Both renderings around the first differing token ``pos``, decoded, lined up on ``▶``."""
    start = max(0, pos - before)

    def side(ids: Sequence[int], dec: Decoder) -> tuple[str, str]:
        head = ("… " if start else "") + " ".join(dec.show(t) for t in ids[start:pos])
        tail = [dec.show(t) for t in ids[pos:pos + after]]
        rest = len(ids) - pos - after
        body = " ".join(tail) if tail else "<end>"
        return head, body + (f" … (+{rest} more)" if rest > 0 else "")

    (hr, br), (hc, bc) = side(r, dec_r), side(c, dec_c)
    lr = f"reference {names.get('reference', '')!r} [{len(r)} tokens]"
    lc = f"candidate {names.get('candidate', '')!r} [{len(c)} tokens]"
    lw, hw = max(len(lr), len(lc)), max(len(hr), len(hc))
    return [f"  {lr:<{lw}}  {hr:>{hw}} ▶ {br}", f"  {lc:<{lw}}  {hc:>{hw}} ▶ {bc}"]


def _head_lines(ids: Sequence[int], dec: Decoder, label: str, n: int = 16) -> str:
    shown = " ".join(dec.show(t) for t in ids[:n])
    return f"  {label} [{len(ids)} tokens]  {shown}" + (" …" if len(ids) > n else "")


def judge_prompt(req: GenerationRequest, comps: Mapping[str, Completion], decoders: Mapping[str, Decoder],
                 bos: set, names: Mapping[str, str],
                 body_len: Optional[Callable[[str], Optional[int]]] = None) -> PromptCheck:
    """Compare the prompt each engine used for ``req`` (ids where both return them, else counts)."""
    pc = PromptCheck(req.label(), req.key(), req.kind, UNCHECKED)
    ids, counts = {}, {}
    for role in ROLES:
        ids[role], counts[role] = _rendering(comps[role])
    pc.counts = dict(counts)
    missing = [role for role in ROLES if counts[role] is None]
    if missing:
        parts = []
        for role in missing:
            c = comps[role]
            why = f"{role} {names.get(role, role)!r} returned neither prompt token ids nor a prompt token count"
            if not c.ok:
                why += f" (it rejected the request: {_clip(' '.join(str(c.error).split()), 120)})"
            parts.append(why)
        pc.why = "; ".join(parts)
        return pc
    r, c = ids["reference"], ids["candidate"]
    if r is not None and c is not None:
        pc.basis = "ids"
        if r == c:
            pc.status = SAME
            return pc
        pc.status = DIFFERS
        p, _, _ = _split(r, c)
        pc.position = p
        pc.name = name_difference(req, r, c, bos, decoders["reference"], decoders["candidate"])
        pc.lines = aligned_lines(r, c, p, decoders["reference"], decoders["candidate"], names)
        return pc
    pc.basis = "count"
    if counts["reference"] == counts["candidate"]:
        pc.status = SAME
        return pc
    pc.status = DIFFERS
    pc.name = name_count_difference(req, counts, ids, bos, decoders["candidate"].show, names, body_len,
                                    lambda role, xs: decoders[role].text(xs))
    for role in ROLES:
        if ids[role] is not None:
            pc.lines.append(_head_lines(ids[role], decoders[role], f"{role} {names.get(role, role)!r}"))
        else:
            pc.lines.append(f"  {role} {names.get(role, role)!r} [{counts[role]} tokens]  (no prompt token ids returned)")
    return pc


# ============================================================================================
# prompt parity: a set of requests


@dataclass
class FamilyResult:
    """A recorded check of this family: verdict, one-line detail, numbers, message lines."""

    check: str
    verdict: str
    detail: str
    numbers: dict = field(default_factory=dict)
    lines: list = field(default_factory=list)
    items: list = field(default_factory=list)  # PromptCheck / EosFinding objects behind the verdict

    def message(self) -> str:
        return "\n".join([f"{self.check}: {self.detail}"] + list(self.lines))


def summarize_prompts(check: str, checks: Sequence[PromptCheck], names: Mapping[str, str],
                      show: int = 3) -> FamilyResult:
    """``fail`` if any request was rendered differently, ``pass`` if every checked request was
    rendered alike, ``skip`` if none could be checked."""
    same = [p for p in checks if p.status == SAME]
    diff = [p for p in checks if p.status == DIFFERS]
    unchecked = [p for p in checks if p.status == UNCHECKED]
    by_name: dict[str, int] = {}
    for p in diff:
        key = p.name.split(" (")[0]
        if any(ch.isdigit() for ch in key):  # "tokenization differs: the prompt text is 5 tokens ..."
            key = key.split(":")[0]
        by_name[key] = by_name.get(key, 0) + 1
    basis = {b: sum(p.basis == b for p in same + diff) for b in ("ids", "count")}
    numbers = {"requests": len(checks), "same": len(same), "differs": len(diff), "unchecked": len(unchecked),
               "basis": basis, "names": by_name, "differing": [p.label for p in diff][:50]}
    how = ", ".join(f"{n} by {b}" for b, n in basis.items() if n)
    tail = f"; {len(unchecked)} not checked ({unchecked[0].why})" if unchecked else ""
    if diff:
        named = "; ".join(f"{k}: {v}" for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]))
        detail = (f"{len(diff)}/{len(same) + len(diff)} requests were rendered differently ({named}); "
                  f"{len(same)} alike ({how}){tail}")
        lines = []
        for p in diff[:show]:
            lines += ["", p.message()]
        if len(diff) > show:
            lines += ["", f"... and {len(diff) - show} more: " + ", ".join(p.label for p in diff[show:show + 12])
                      + (" ..." if len(diff) > show + 12 else "")]
        return FamilyResult(check, FAIL, detail, numbers, lines, list(checks))
    if not same:
        why = unchecked[0].why if unchecked else "no requests"
        return FamilyResult(check, SKIP, f"no request could be checked: {why}", numbers, [], list(checks))
    return FamilyResult(check, PASS, f"every checked request rendered alike: {len(same)}/{len(same)} ({how}){tail}",
                        numbers, [], list(checks))


# ============================================================================================
# termination


@dataclass
class EosFinding:
    """Where both engines produced the same tokens and only one of them stopped (EOS)."""

    label: str
    kind: str  # "not-honoured": the candidate generated the reference's EOS and went on;
    #            "extra-eos": the candidate stopped on a token the reference generated and went past
    token_id: int
    position: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _eos_stop(c: Completion) -> bool:
    return c.ok and c.finish_reason == "stop" and c.stop_reason is None and bool(c.token_ids)


def judge_eos(req: GenerationRequest, ref: Completion, cand: Completion, eos: Mapping[str, set],
              show: Callable[[int], str]) -> Optional[EosFinding]:
    """A measured EOS difference on one request, or None. ``eos[role]`` holds the ids known to end
    that engine's outputs (declared, from its model files, or seen ending its EOS stops), so that a
    last token is read as an EOS only where it is one, not where an engine leaves EOS out of ids."""
    if req.ignore_eos or not (ref.ok and cand.ok):
        return None
    r, c = [int(t) for t in ref.token_ids], [int(t) for t in cand.token_ids]
    if _eos_stop(ref) and _eos_stop(cand) and ref.text == cand.text and abs(len(r) - len(c)) == 1 \
            and (r[:-1] == c or c[:-1] == r):
        # both stopped on EOS with the same text; one side's ids include the EOS token, the other's
        # (a text-only stream, ids recovered from its text) cannot: the same ending
        return None
    if _eos_stop(ref) and len(c) > len(r) and c[:len(r)] == r and r[-1] in eos["reference"]:
        t = r[-1]
        return EosFinding(req.label(), "not-honoured", t, len(r) - 1,
                          f"EOS {show(t)} not honoured by the candidate: both generated the same {len(r)} tokens "
                          f"ending in it; the reference stopped there, the candidate went on "
                          f"({len(c) - len(r)} more tokens, finish_reason {cand.finish_reason!r})")
    if _eos_stop(cand) and len(r) > len(c) and r[:len(c)] == c and c[-1] in eos["candidate"]:
        t = c[-1]
        return EosFinding(req.label(), "extra-eos", t, len(c) - 1,
                          f"the candidate stops on {show(t)}, which the reference generated and went past: both "
                          f"generated the same {len(c)} tokens, the reference {len(r) - len(c)} more "
                          f"(finish_reason {ref.finish_reason!r}); an EOS id only the candidate has")
    return None


def special_tokens_in(text: str, specials: Iterable[str], prompt_texts: Iterable[str] = ()) -> list[str]:
    """Special-token strings in ``text`` (those the prompt itself contains are not counted)."""
    given = list(prompt_texts)
    return sorted({s for s in specials if s and s in text and not any(s in p for p in given)})


@dataclass
class TerminationStats:
    n_finish: int
    ref_stopped: int
    cand_stopped: int
    b: int  # reference stopped, candidate ran to max_tokens
    c: int  # reference ran to max_tokens, candidate stopped
    mcnemar_p: float
    finish_verdict: str
    finish_needed: Optional[int]
    n_length: int
    ref_mean_length: Optional[float]
    cand_mean_length: Optional[float]
    length_ratio: Optional[float]
    length_ratio_ci: Optional[tuple]
    wilcoxon_p: float
    length_verdict: str
    length_needed: Optional[int]
    max_stop_rate_difference: float
    max_length_ratio: float
    alpha_fail: float
    confidence: float
    verdict: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_lengths(pairs: Sequence[tuple[Completion, Completion]], eos: Mapping[str, set],
                    retokenizer: Callable[[], Any]) -> tuple[dict[int, Optional[int]], dict[str, int]]:
    """Each answer's length in tokens without the EOS that ended it, measured alike on both sides of
    a pair, keyed by ``id(completion)``, and how many pairs were measured each way.

    ``ids``: both engines returned their own ids: the ids, less the EOS id an engine lists after
    stopping on it (vLLM and TensorRT-LLM list it; ``eos[role]`` holds the ids known to end that
    engine's outputs). ``count``: a side returned text only, with a count (``usage``): its count,
    less one on an EOS stop (vLLM's and trtllm-serve's ``completion_tokens`` count the EOS they
    generated: both count every token of ``token_ids``, which keeps the end id). ``text``: a side
    gave no count: both texts re-tokenized with one tokenizer (``retokenizer()``, called only then;
    a detokenizer's replacement characters shorten a text, so it comes last); None without one."""
    def own(role: str, x: Completion) -> Optional[int]:
        if x.token_ids_source == "engine":
            n = len(x.token_ids)
            return n - 1 if n and _eos_stop(x) and int(x.token_ids[-1]) in eos[role] else n
        n = x.completion_token_count
        if not isinstance(n, int):
            return None
        return n - 1 if n and x.finish_reason == "stop" and x.stop_reason is None else n

    out: dict[int, Optional[int]] = {}
    basis = {"ids": 0, "count": 0, "text": 0, "none": 0}
    retok: Any = None
    asked = False
    for r, c in pairs:
        if not (r.ok and c.ok):
            continue
        a, b = own("reference", r), own("candidate", c)
        if a is not None and b is not None:
            out[id(r)], out[id(c)] = a, b
            basis["ids" if r.token_ids_source == c.token_ids_source == "engine" else "count"] += 1
            continue
        if not asked:
            asked, retok = True, retokenizer()
        if retok is not None:
            try:
                out[id(r)], out[id(c)] = (len(retok.tokenize(x.text)) for x in (r, c))
                basis["text"] += 1
                continue
            except Exception:  # the tokenizer failed on this text: the pair goes uncounted
                pass
        out[id(r)] = out[id(c)] = None
        basis["none"] += 1
    return out, basis


def termination_stats(pairs: Sequence[tuple[Completion, Completion]], alpha_fail: float = 0.005,
                      confidence: float = 0.95, max_stop_rate_difference: float = 0.10,
                      max_length_ratio: float = 1.10, seed: int = 0, resamples: int = 2000,
                      length: Optional[Callable[[str, Completion], Optional[int]]] = None) -> TerminationStats:
    """Paired termination statistics over requests both engines answered.

    Finish: exact two-sided McNemar on "stopped" vs "ran to max_tokens" (requests that ended one of
    those two ways on both engines). Length: Wilcoxon signed-rank on the paired output lengths and
    a paired bootstrap CI of mean(candidate) / mean(reference). Each fail test runs at
    ``alpha_fail / 2`` (together one decision at ``alpha_fail``); ``fail`` also needs the effect
    to reach the margin; ``pass`` needs both shown within the margins at ``confidence`` (TOST)."""
    import numpy as np
    from scipy import stats as st

    from .stats import paired_accuracy

    half = alpha_fail / 2
    a_eq = 1.0 - confidence
    fin = [(r.finish_reason == "stop", c.finish_reason == "stop") for r, c in pairs
           if r.ok and c.ok and r.finish_reason in ("stop", "length") and c.finish_reason in ("stop", "length")]
    n = len(fin)
    b = sum(1 for r, c in fin if r and not c)
    cc = sum(1 for r, c in fin if c and not r)
    p_mc = float(st.binomtest(b, b + cc, 0.5).pvalue) if b + cc else 1.0
    needed: Optional[int] = None
    if n == 0:
        f_verdict = INCONCLUSIVE
    elif p_mc < half and abs(b - cc) / n >= max_stop_rate_difference:
        f_verdict = FAIL
    else:
        rs, cs = [r for r, _ in fin], [c for _, c in fin]
        down = paired_accuracy(rs, cs, max_drop=max_stop_rate_difference, alpha=half, alpha_equivalence=a_eq)
        up = paired_accuracy(cs, rs, max_drop=max_stop_rate_difference, alpha=half, alpha_equivalence=a_eq)
        if down.verdict == "equivalent" and up.verdict == "equivalent":
            f_verdict = PASS
        else:
            f_verdict = INCONCLUSIVE
            needs = [v.items_needed for v in (down, up) if v.verdict != "equivalent" and v.items_needed]
            needed = max(needs) if needs else None
    # each engine's own count (ids, else usage): a text-only stream's recovered ids lack the EOS;
    # ``length(role, completion)`` may normalise it (the caller strips a trailing EOS id)
    size = length or (lambda _role, x: x.output_token_count)
    lens = [(size("reference", r), size("candidate", c)) for r, c in pairs if r.ok and c.ok]
    uncounted = sum(1 for a, b in lens if a is None or b is None)
    lens = [(a, b) for a, b in lens if a is not None and b is not None]
    m = len(lens)
    ratio = ci = None
    p_w = 1.0
    l_needed: Optional[int] = None
    rmean = cmean = None
    if m == 0:
        l_verdict = INCONCLUSIVE
    else:
        arr = np.asarray(lens, dtype=float)
        rl, cl = arr[:, 0], arr[:, 1]
        rmean, cmean = float(rl.mean()), float(cl.mean())
        d = cl - rl
        if np.any(d != 0):
            p_w = float(st.wilcoxon(d, zero_method="wilcox").pvalue)
        ratio = cmean / rmean if rmean > 0 else (1.0 if cmean == 0 else math.inf)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, m, size=(resamples, m))
        rs_mean, cs_mean = rl[idx].mean(axis=1), cl[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = np.where(rs_mean > 0, cs_mean / np.where(rs_mean > 0, rs_mean, 1.0),
                            np.where(cs_mean > 0, np.inf, 1.0))
        ci = (float(np.quantile(boot, a_eq)), float(np.quantile(boot, 1.0 - a_eq)))
        outside = ratio > max_length_ratio or ratio < 1.0 / max_length_ratio
        if p_w < half and outside:
            l_verdict = FAIL
        elif ci[0] >= 1.0 / max_length_ratio and ci[1] <= max_length_ratio:
            l_verdict = PASS
        else:
            l_verdict = INCONCLUSIVE
            lo, hi = (math.log(x) if 0 < x < math.inf else None for x in ci)
            room = math.log(max_length_ratio) - abs(math.log(ratio)) if 0 < ratio < math.inf else 0.0
            if lo is not None and hi is not None and room > 0:
                l_needed = int(math.ceil(m * ((hi - lo) / 2 / room) ** 2))
    verdict = FAIL if FAIL in (f_verdict, l_verdict) else (PASS if f_verdict == l_verdict == PASS else INCONCLUSIVE)
    parts = [f"finish: reference stopped on {sum(r for r, _ in fin)}/{n}, candidate on {sum(c for _, c in fin)}/{n} "
             f"({b} only the reference stopped, {cc} only the candidate; exact McNemar p={p_mc:.3g}) -> {f_verdict}"]
    if f_verdict == INCONCLUSIVE and n:
        parts[-1] += (f" (stop rates not yet shown within ±{max_stop_rate_difference:.0%}"
                      + (f": need about {needed} requests)" if needed else ")"))
    if m:
        parts.append(f"length: mean {rmean:.1f} -> {cmean:.1f} tokens, ratio {ratio:.3g} "
                     f"({(1 - 2 * a_eq) * 100:g}% CI {ci[0]:.3g}-{ci[1]:.3g}, margin {max_length_ratio:g}; "
                     f"Wilcoxon p={p_w:.3g}) -> {l_verdict}"
                     + (f" (need about {l_needed} requests)" if l_needed else ""))
    else:
        parts.append("length: no request answered by both engines" if not uncounted else
                     f"length: not compared: {uncounted} answered request(s) have no countable output length (no "
                     "token ids and no usage counts)")
    if m and uncounted:
        parts[-1] += f" ({uncounted} answered request(s) without a countable length left out)"
    return TerminationStats(
        n_finish=n, ref_stopped=sum(r for r, _ in fin), cand_stopped=sum(c for _, c in fin), b=b, c=cc,
        mcnemar_p=p_mc, finish_verdict=f_verdict, finish_needed=needed, n_length=m, ref_mean_length=rmean,
        cand_mean_length=cmean, length_ratio=ratio, length_ratio_ci=ci, wilcoxon_p=p_w, length_verdict=l_verdict,
        length_needed=l_needed, max_stop_rate_difference=max_stop_rate_difference, max_length_ratio=max_length_ratio,
        alpha_fail=alpha_fail, confidence=confidence, verdict=verdict, message="; ".join(parts))


def _distribution(comps: Iterable[Completion]) -> dict[str, Any]:
    finish: dict[str, int] = {}
    lengths = []
    for c in comps:
        key = str(c.finish_reason) if c.ok else "error"
        finish[key] = finish.get(key, 0) + 1
        if c.ok and c.output_token_count is not None:
            lengths.append(c.output_token_count)
    lengths.sort()
    return {"finish_reason": finish, "n": len(lengths),
            "mean_length": sum(lengths) / len(lengths) if lengths else None,
            "median_length": lengths[len(lengths) // 2] if lengths else None,
            "max_length": lengths[-1] if lengths else None}


# ============================================================================================
# HTML


def html_section(doc: Mapping[str, Any]) -> str:
    """The report's ``rendering`` section as HTML (tables only, no network)."""
    sec = doc.get("rendering") or {}
    e = html.escape
    names = sec.get("engines") or {}
    head = "".join(f"<th>{e(r)}: {e(str(names.get(r, r)))}</th>" for r in ROLES)
    parts = ["<h2>Request rendering and termination</h2>"]
    for key, title in (("preflight", "Rendering pre-flight"), ("prompt_parity", "Prompt parity")):
        s = sec.get(key)
        if not s:
            continue
        parts.append(f"<h3>{e(title)}: {e(str(s.get('verdict', '')))}</h3><p>{e(str(s.get('detail', '')))}</p>")
        rows = []
        for p in s.get("requests", []):
            cls = {SAME: "pass", DIFFERS: "fail"}.get(p.get("status"), "")
            counts = p.get("counts") or {}
            what = p.get("name") or p.get("why") or f"same ({p.get('basis')})"
            pre = "<pre>" + e("\n".join(p.get("lines") or [])) + "</pre>" if p.get("lines") else ""
            rows.append(f"<tr class='{cls}'><td>{e(str(p.get('label')))}</td><td>{e(str(p.get('request_kind')))}</td>"
                        + "".join(f"<td>{e(str(counts.get(r)))}</td>" for r in ROLES)
                        + f"<td>{e(str(what))}{pre}</td></tr>")
        if rows:
            parts.append(f"<table><tr><th>request</th><th>kind</th>{head}<th>rendering</th></tr>{''.join(rows)}</table>")
    t = sec.get("termination")
    if t:
        parts.append(f"<h3>Termination: {e(str(t.get('verdict', '')))}</h3><p>{e(str(t.get('detail', '')))}</p>")
        dist = t.get("distribution") or {}
        reasons = sorted({k for r in ROLES for k in ((dist.get(r) or {}).get("finish_reason") or {})})
        rows = [f"<tr><td>finish_reason {e(k)}</td>" + "".join(
            f"<td>{e(str(((dist.get(r) or {}).get('finish_reason') or {}).get(k, 0)))}</td>" for r in ROLES) + "</tr>"
            for k in reasons]
        for k in ("mean_length", "median_length", "max_length"):
            rows.append(f"<tr><td>{e(k.replace('_', ' '))}</td>" + "".join(
                f"<td>{e(_fmt((dist.get(r) or {}).get(k)))}</td>" for r in ROLES) + "</tr>")
        eos = t.get("eos") or {}
        for k in ("declared", "model_files", "observed"):
            rows.append(f"<tr><td>EOS ids ({e(k.replace('_', ' '))})</td>" + "".join(
                f"<td>{e(_eos_cell(eos.get(r) or {}, k))}</td>" for r in ROLES) + "</tr>")
        sp = t.get("special_tokens") or {}
        rows.append("<tr><td>outputs with special tokens in text</td>" + "".join(
            f"<td>{e(str(sp.get(r, 0)))}</td>" for r in ROLES) + "</tr>")
        parts.append(f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>")
        findings = [f"<li class='fail'>{e(f['label'])}: {e(f['detail'])}</li>" for f in t.get("eos_findings") or []]
        findings += [f"<li class='{e(f.get('verdict', ''))}'>{e(f['label'])}: {e(f['detail'])}</li>"
                     for f in t.get("special_findings") or []]
        if findings:
            parts.append(f"<ul>{''.join(findings)}</ul>")
    return "".join(parts)


def _eos_cell(sets: Mapping[str, Any], key: str) -> str:
    ids = sets.get(key)
    if ids is None:
        return "—"
    dec = sets.get("decoded") or {}
    return ", ".join(f"{i} {dec.get(str(i))!r}" if dec.get(str(i)) is not None else str(i) for i in ids) or "none"


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    return f"{x:.1f}" if isinstance(x, float) else str(x)


# ============================================================================================
# the family


class RenderingChecks:
    """The rendering family (``engine_pair.rendering``): prompt parity per request and over the
    suite, a rendering pre-flight, termination parity. Each ``assert_*`` records its check, fills
    the report's ``rendering`` section and raises ParityMismatch on ``fail``."""

    name = "rendering"
    section = "rendering"

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    @staticmethod
    def render_html(doc: Any) -> str:
        return html_section(doc)

    @staticmethod
    def terminal_lines(doc: Any) -> list[str]:
        """One line per part that ran (pre-flight, prompt parity, termination) for the summary."""
        sec = (doc or {}).get("rendering") or {}
        parts = (("pre-flight", "preflight"), ("prompt parity", "prompt_parity"), ("termination", "termination"))
        return [f"rendering {label}: {sec[key].get('verdict')}: {_clip(str(sec[key].get('detail', '')), 160)}"
                for label, key in parts if isinstance(sec.get(key), dict) and sec[key].get("verdict")]

    # -- plumbing ----------------------------------------------------------------------------
    def _names(self) -> dict[str, str]:
        return {role: self._ctx.engine(role).name for role in ROLES}

    def _facts(self, role: str) -> Optional[TokenizerFacts]:
        spec = self._ctx.engine(role).spec
        path = getattr(spec, "tokenizer", None) or getattr(spec, "target", None)
        cache = self._ctx.state("rendering.facts", dict)
        if path not in cache:
            cache[path] = tokenizer_facts(str(path)) if path else None
        return cache[path]

    def _decoders(self) -> dict[str, Decoder]:
        cache = self._ctx.state("rendering.decoders", dict)
        out = {}
        for role in ROLES:
            comps = self._ctx.completions(role)
            hit = cache.get(role)
            if hit is None or hit[0] != len(comps):
                hit = (len(comps), Decoder.from_completions(self._facts(role), comps.values()))
                cache[role] = hit
            out[role] = hit[1]
        return out

    def _bos(self, decs: Mapping[str, Decoder]) -> set:
        return set().union(*(d.bos_ids for d in decs.values()))

    def _body_len(self, req: GenerationRequest) -> Callable[[str], Optional[int]]:
        cache = self._ctx.state("rendering.body_len", dict)

        def body(role: str) -> Optional[int]:
            if req.prompt is None:
                return None
            k = (role, req.prompt)
            if k not in cache:
                try:
                    cache[k] = len(self._ctx.engine(role).tokenize(req.prompt))
                except Exception:  # an engine that cannot tokenize: the count stays unnamed
                    cache[k] = None
            return cache[k]
        return body

    def _judge(self, requests: Sequence[GenerationRequest]) -> list[PromptCheck]:
        self._ctx.run_pending()
        decs = self._decoders()
        bos, names = self._bos(decs), self._names()
        done = {role: self._ctx.completions(role) for role in ROLES}
        out = []
        for req in requests:
            k = req.key()
            if k not in done["reference"] or k not in done["candidate"]:
                continue
            out.append(judge_prompt(req, {role: done[role][k] for role in ROLES}, decs, bos, names,
                                    self._body_len(req)))
        return out

    def _section(self) -> dict[str, Any]:
        sec = self._ctx.section(self.section, dict)
        sec["engines"] = self._names()
        return sec

    def _conclude(self, res: FamilyResult, key: str, extra: Optional[dict] = None) -> FamilyResult:
        sec = self._section()
        sec[key] = {"verdict": res.verdict, "detail": res.detail, **(extra or {})}
        self._ctx.record(res.check, res.verdict, res.detail, res.numbers)
        if res.verdict == FAIL:
            raise ParityMismatch(res.message())
        return res

    # -- prompt parity -----------------------------------------------------------------------
    def assert_prompt_rendered_alike(self, request: GenerationRequest) -> PromptCheck:
        """One request: both engines used the same prompt tokens (ids, else counts). Raises with
        both renderings aligned at the first difference; returns the check (its ``status`` is
        ``unchecked`` where an engine returns neither ids nor a count)."""
        self._ctx.register([request])
        pc = self._judge([request])[0]
        if pc.status == DIFFERS:
            raise ParityMismatch("prompt rendered differently: " + pc.message())
        return pc

    def assert_prompt_parity(self, requests: Optional[Sequence[GenerationRequest]] = None) -> FamilyResult:
        """Every suite request (or ``requests``) rendered alike by both engines: check
        ``prompt-parity``; ``fail`` names each difference, ``skip`` when nothing could be checked."""
        if requests is not None:
            self._ctx.register(requests)
        reqs = list(requests) if requests is not None else self._ctx.suite_requests()
        checks = self._judge(reqs)
        res = summarize_prompts(CHECK_PROMPT, checks, self._names())
        return self._conclude(res, "prompt_parity", {"requests": [p.to_dict() for p in checks if p.status != SAME][:200]
                                                     + [p.to_dict() for p in checks if p.status == SAME][:50]})

    def _preflight(self) -> FamilyResult:
        reqs = preflight_requests()
        # whether the pre-flight rode the first batch with the suite (decided when first declared)
        rode = self._ctx.state("rendering.preflight_rode", lambda: not any(
            r.key() in self._ctx.completions("candidate") for r in self._ctx.suite_requests()))
        self._ctx.register(reqs, aux=True)
        checks = self._judge(reqs)
        res = summarize_prompts(CHECK_PREFLIGHT, checks, self._names(), show=len(reqs))
        res.numbers["rode_suite_batch"] = rode
        if res.verdict == FAIL:
            res.detail = "the engines render prompts differently: " + res.detail
        return res

    def preflight(self) -> list[str]:
        """At session start, once both engines are up (the plugin calls it before the first test):
        the pre-flight requests ride the first batch with the suite's prompts and are judged at
        once; returns the lines shown at the top of the run (a mismatch in full, once). The check
        itself is recorded by ``assert_rendering_preflight`` (``suites/test_rendering_parity.py``)."""
        if self._ctx.single_engine:
            return []
        res = self._preflight()
        head = f"rendering pre-flight ({len(res.items)} chat and completion requests): {res.verdict.upper()}: {res.detail}"
        return [head] + (list(res.lines) if res.verdict == FAIL else [])

    def assert_rendering_preflight(self) -> FamilyResult:
        """The pre-flight requests (:func:`preflight_requests`) rendered alike: check
        ``rendering-preflight``. They are auxiliary requests: not suite prompts. At session start
        the plugin has already sent and shown them (:meth:`preflight`); this records the check."""
        res = self._preflight()
        return self._conclude(res, "preflight", {"requests": [p.to_dict() for p in res.items],
                                                 "rode_suite_batch": res.numbers["rode_suite_batch"]})

    # -- termination -------------------------------------------------------------------------
    def assert_termination_parity(self, requests: Optional[Sequence[GenerationRequest]] = None,
                                  max_stop_rate_difference: Optional[float] = None,
                                  max_length_ratio: float = 1.10) -> FamilyResult:
        """Both engines stop the same way over the suite (or ``requests``): no measured EOS
        difference, no special tokens in one engine's text only, and the paired finish and length
        statistics (see :func:`termination_stats`; the stop-rate margin defaults to
        ``1 - --parity-min-equivalence``). Check ``termination-parity``."""
        ctx = self._ctx
        if requests is not None:
            ctx.register(requests)
        reqs = list(requests) if requests is not None else ctx.suite_requests()
        ctx.run_pending()
        done = {role: ctx.completions(role) for role in ROLES}
        rows = [(q, done["reference"][q.key()], done["candidate"][q.key()]) for q in reqs
                if q.key() in done["reference"] and q.key() in done["candidate"]]
        decs = self._decoders()
        eos_sets = {role: self._eos_sets(role, [(x[0], x[1 if role == "reference" else 2]) for x in rows], decs[role])
                    for role in ROLES}
        known = {role: set(eos_sets[role]["model_files"] or ()) | set(eos_sets[role]["declared"] or ())
                 | set(eos_sets[role]["recurring"]) for role in ROLES}
        findings = [f for f in (judge_eos(q, r, c, known, decs["reference"].show) for q, r, c in rows) if f is not None]
        specials = set(WELL_KNOWN_SPECIALS).union(*(d.special.values() for d in decs.values()))
        sp_findings, sp_counts = [], {"reference": 0, "candidate": 0}
        for q, r, c in rows:
            given = [q.prompt or ""] + [m.get("content", "") for m in q.messages or ()]
            found = {role: special_tokens_in(x.text, specials, given) if x.ok else [] for role, x in zip(ROLES, (r, c))}
            for role in ROLES:
                sp_counts[role] += bool(found[role])
            if found["candidate"] or found["reference"]:
                if found["candidate"] and found["reference"]:
                    v, who = SHARED, "both engines"
                elif found["candidate"]:
                    v, who = FAIL, "the candidate only"
                else:
                    v, who = WARN, "the reference only (the candidate's text is clean)"
                toks = sorted(set(found["candidate"]) | set(found["reference"]))
                sp_findings.append({"label": q.label(), "verdict": v,
                                    "detail": f"special token(s) {', '.join(toks)} in the output text of {who}"})
        margin = (1.0 - float(ctx.cfg.min_equivalence)) if max_stop_rate_difference is None else max_stop_rate_difference
        alpha = float(ctx.cfg.alpha_per_decision)
        judged = [(r, c) for q, r, c in rows if not q.ignore_eos]
        lengths, length_basis = content_lengths(judged, known, ctx.retokenizer)
        stats = termination_stats(judged, alpha_fail=alpha,
                                  confidence=float(ctx.cfg.confidence), max_stop_rate_difference=margin,
                                  max_length_ratio=max_length_ratio, seed=int(getattr(ctx.cfg, "seed", 0) or 0),
                                  length=lambda role, c: lengths.get(id(c)))
        declared = [eos_sets[r]["declared"] for r in ROLES]
        eos_warn = None not in declared and set(declared[0]) != set(declared[1])
        verdicts = [stats.verdict] + [FAIL for _ in findings] + [f["verdict"] for f in sp_findings]
        if eos_warn:
            verdicts.append(WARN)
        verdict = worst_of(verdicts)
        parts = []
        if findings:
            kinds = {k: sum(f.kind == k for f in findings) for k in ("not-honoured", "extra-eos")}
            tok = sorted({decs["reference"].show(f.token_id) for f in findings})
            parts.append(f"EOS differs on {len(findings)} request(s) ({kinds['not-honoured']} where the candidate "
                         f"went on past the reference's EOS, {kinds['extra-eos']} where it stopped on a token the "
                         f"reference went past; token(s) {', '.join(tok)})")
        cand_sp = [f for f in sp_findings if f["verdict"] == FAIL]
        if cand_sp:
            parts.append(f"special tokens in the candidate's text only on {len(cand_sp)} request(s)")
        shared_sp = [f for f in sp_findings if f["verdict"] == SHARED]
        if shared_sp:
            parts.append(f"special tokens in both engines' text on {len(shared_sp)} request(s) (shared)")
        if eos_warn:
            parts.append(f"declared EOS ids differ: reference {declared[0]}, candidate {declared[1]}")
        parts.append(stats.message)
        if length_basis["count"] or length_basis["text"] or length_basis["none"]:
            parts.append(f"lengths measured on {length_basis['ids']} pair(s) by the engines' token ids, "
                         f"{length_basis['count']} by a text-only side's own count (usage, less the EOS on an EOS "
                         f"stop), {length_basis['text']} by one tokenizer over both texts (a side gave no count)"
                         + (f", {length_basis['none']} not measurable" if length_basis["none"] else ""))
        detail = "; ".join(parts)
        lines = [f"  {f.label}: {f.detail}" for f in findings[:5]]
        lines += [f"  {f['label']}: {f['detail']}" for f in cand_sp[:3]]
        if stats.verdict == FAIL:
            lines.append(f"  {stats.message}")
        numbers = {**stats.to_dict(), "alpha_fail": alpha, "requests": len(rows), "eos_findings": len(findings),
                   "length_basis": length_basis,
                   "special_findings": {v: sum(f["verdict"] == v for f in sp_findings) for v in (FAIL, WARN, SHARED)},
                   "eos": {r: {k: v for k, v in eos_sets[r].items() if k != "recurring"} for r in ROLES}}
        res = FamilyResult(CHECK_TERMINATION, verdict, detail, numbers, lines, findings)
        sec_extra = {"distribution": {role: _distribution(x[1 if role == "reference" else 2] for x in rows) for role in ROLES},
                     "eos": numbers["eos"], "special_tokens": sp_counts, "stats": stats.to_dict(),
                     "eos_findings": [f.to_dict() for f in findings[:100]], "special_findings": sp_findings[:100]}
        return self._conclude(res, "termination", sec_extra)

    def _eos_sets(self, role: str, rows: Sequence[tuple[GenerationRequest, Completion]], dec: Decoder) -> dict[str, Any]:
        """The EOS ids of one engine where knowable: declared by its adapter, read from its model
        files, observed ending its EOS stops (``recurring``: those that end two or more). Requests
        with stop strings are left out of the observed ids: an engine that reports a stop-string
        stop without its ``stop_reason`` would make a content token look like an EOS."""
        info = self._ctx.engine(role).info
        declared = (getattr(info, "details", None) or {}).get("eos_token_ids")
        ends: dict[int, int] = {}
        for q, c in rows:
            if _eos_stop(c) and not q.stop and c.token_ids_source == "engine":  # recovered ids lack the EOS
                t = int(c.token_ids[-1])
                ends[t] = ends.get(t, 0) + 1

        out = {"declared": sorted(int(t) for t in declared) if isinstance(declared, (list, tuple)) else None,
               "model_files": sorted(dec.eos_ids) if dec.eos_ids else None,
               "observed": sorted(ends), "recurring": sorted(t for t, n in ends.items() if n >= 2)}
        ids = set(ends) | set(out["declared"] or ()) | set(out["model_files"] or ())
        out["decoded"] = {str(i): dec.piece(i) for i in sorted(ids)}
        return out
