"""Hypothesis strategies for engine-parity property tests.

Lowercase factories with validated arguments, as Hypothesis's own are::

    from hypothesis import given, settings
    from pytest_engineparity import strategies as eps

    @given(req=eps.requests(max_tokens=(1, 24)))
    @settings(max_examples=25, deadline=None)
    def test_truncation_contract(engine_pair, req):
        engine_pair.assert_truncation_contract(req)

Shrinking ends at a minimal failing ``GenerationRequest``; Hypothesis prints it as Python
(``GenerationRequest(prompt='...', max_tokens=3, stop=('a',))``) so it can be re-run as is.
Importing this module imports Hypothesis (it is not imported when pytest loads the plugin).
"""

from __future__ import annotations

from typing import Callable, Optional

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .types import GenerationRequest

__all__ = ["prompts", "prompts_near_length", "sampling_params", "stop_strings", "requests"]

_CODE = "def return if else for in while ()[]{}:=+-*/ \n\t\"'#0123456789abcdefxyz_"
_WORDS = ["the", "a", "cat", "river", "blue", "quickly", "runs", "over", "seven", "light", "and", "of",
          "engine", "token", "model", "data", "night", "green", "house", "sings"]


def _check_range(name: str, value: tuple[int, int], lo: int, hi: Optional[int] = None) -> None:
    if (not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(v, int) for v in value)
            or value[0] > value[1] or value[0] < lo or (hi is not None and value[1] > hi)):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise InvalidArgument(f"{name}={value!r}: expected a (min, max) pair of ints within {bound}")


def prompts(kind: str = "text", min_size: int = 1, max_size: int = 200) -> st.SearchStrategy[str]:
    """Prompt text. ``kind``: "text" (words), "unicode" (any printable code points, no
    surrogates or NUL), "code", "whitespace" (words with runs of spaces, tabs, newlines)."""
    if kind not in ("text", "unicode", "code", "whitespace"):
        raise InvalidArgument(f"kind={kind!r}: expected one of text, unicode, code, whitespace")
    if not (isinstance(min_size, int) and isinstance(max_size, int) and 1 <= min_size <= max_size):
        raise InvalidArgument(f"min_size={min_size!r}, max_size={max_size!r}: need 1 <= min_size <= max_size")
    if kind == "unicode":
        alphabet = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00")
        text = st.text(alphabet, min_size=min_size, max_size=max_size)
    elif kind == "code":
        text = st.text(st.sampled_from(_CODE), min_size=min_size, max_size=max_size)
    else:
        sep = st.sampled_from([" "]) if kind == "text" else st.sampled_from([" ", "  ", "\t", "\n", " \n ", "\n\n"])
        words = st.lists(st.tuples(st.sampled_from(_WORDS), sep), min_size=1, max_size=max(1, max_size // 4))
        text = words.map(lambda ws: "".join(w + s for w, s in ws))
        text = text.filter(lambda t: min_size <= len(t)).map(lambda t: t[:max_size])
    return text.filter(lambda t: t.strip() != "")


def prompts_near_length(tokenize: Callable[[str], list], n_tokens: int, tolerance: int = 2) -> st.SearchStrategy[str]:
    """Text whose token count (by ``tokenize``, e.g. ``engine_pair.reference.tokenize``) is
    within ``tolerance`` of ``n_tokens``: for limits just below, at and above a context length."""
    if not callable(tokenize):
        raise InvalidArgument("tokenize must be a callable text -> token ids")
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise InvalidArgument(f"n_tokens={n_tokens!r}: expected an int >= 1")
    if not isinstance(tolerance, int) or tolerance < 0:
        raise InvalidArgument(f"tolerance={tolerance!r}: expected an int >= 0")

    @st.composite
    def build(draw: st.DrawFn) -> str:
        words = draw(st.lists(st.sampled_from(_WORDS), min_size=8, max_size=8))
        unit = " ".join(words) + " "
        per = max(1, len(tokenize(unit)))
        text = unit * max(1, n_tokens // per)
        # top up / trim word by word to land within the tolerance
        extra = iter(draw(st.lists(st.sampled_from(_WORDS), min_size=64, max_size=64)) * 64)
        while len(tokenize(text)) < n_tokens - tolerance:
            text += next(extra) + " "
        while len(tokenize(text)) > n_tokens + tolerance and " " in text.strip():
            text = text.rstrip().rsplit(" ", 1)[0] + " "
        return text

    return build()


def stop_strings(max_count: int = 3, max_len: int = 6) -> st.SearchStrategy[tuple]:
    """Tuples of distinct non-empty stop strings (words, punctuation, newlines, overlapping)."""
    if not isinstance(max_count, int) or max_count < 0:
        raise InvalidArgument(f"max_count={max_count!r}: expected an int >= 0")
    if not isinstance(max_len, int) or max_len < 1:
        raise InvalidArgument(f"max_len={max_len!r}: expected an int >= 1")
    atom = st.one_of(st.sampled_from(_WORDS + [".", ",", "\n", "\n\n", "the ", " a", "ee", "e"]),
                     st.text(st.sampled_from("abcdefghij .\n"), min_size=1, max_size=max_len))
    return st.lists(atom.map(lambda s: s[:max_len]).filter(bool), max_size=max_count, unique=True).map(tuple)


def sampling_params(greedy: bool = True, max_tokens: tuple[int, int] = (1, 32)) -> st.SearchStrategy[dict]:
    """Keyword arguments for ``GenerationRequest``: max_tokens, ignore_eos, min_tokens,
    include_stop_str_in_output, and (unless ``greedy``) temperature, top_p, top_k, seed."""
    _check_range("max_tokens", max_tokens, 1)

    @st.composite
    def build(draw: st.DrawFn) -> dict:
        mt = draw(st.integers(*max_tokens))
        kw = {"max_tokens": mt, "ignore_eos": draw(st.booleans()),
              "min_tokens": draw(st.integers(0, mt)) if draw(st.booleans()) else 0,
              "include_stop_str_in_output": draw(st.booleans())}
        if greedy:
            kw["temperature"] = 0.0
        else:
            kw.update(temperature=draw(st.floats(0.1, 1.5)), top_p=draw(st.floats(0.1, 1.0)),
                      top_k=draw(st.sampled_from([0, 1, 5, 50])), seed=draw(st.integers(0, 2**31 - 1)))
        return kw

    return build()


def requests(kind: str = "text", greedy: bool = True, max_tokens: tuple[int, int] = (1, 32),
             with_stop: bool = True, chat: Optional[bool] = None) -> st.SearchStrategy[GenerationRequest]:
    """Whole ``GenerationRequest``s: a prompt (text or, when ``chat``, one user message; None =
    both), sampling params and optional stop strings."""
    if chat not in (None, True, False):
        raise InvalidArgument(f"chat={chat!r}: expected None, True or False")

    @st.composite
    def build(draw: st.DrawFn) -> GenerationRequest:
        text = draw(prompts(kind, max_size=160))
        as_chat = draw(st.booleans()) if chat is None else chat
        kw = draw(sampling_params(greedy, max_tokens))
        stop = draw(stop_strings()) if with_stop else ()
        if as_chat:
            return GenerationRequest(messages=({"role": "user", "content": text},), stop=stop, **kw)
        return GenerationRequest(prompt=text, stop=stop, **kw)

    return build()
