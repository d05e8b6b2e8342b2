"""Quality parity on labelled tasks: did the candidate get *worse*, not merely different?

Similarity between two engines' answers does not say which one is right. Here each item of a
labelled task set is scored right/wrong on each engine, and per task the paired outcomes go to
:func:`stats.paired_accuracy`: an exact McNemar test on the discordant items and a one-sided
non-inferiority test against ``--parity-max-quality-drop`` percentage points, TOST style. The
verdict is ``equivalent`` (a drop of the margin or more is ruled out), ``worse`` (a drop larger
than the margin is shown) or ``inconclusive`` with about how many items would settle it; never a
bare accuracy threshold.

Task files are JSONL, one item a line: a request as in a prompt file (``prompt`` or
``messages`` plus sampling fields, parsed by :func:`prompts.request_from_body`), plus

* ``score``: how to grade the reply, exactly one of

  - ``{"exact": "Paris"}`` or ``{"exact": ["small", "little"]}``: the whole reply equals an answer
    after trimming whitespace, quotes, markdown emphasis and surrounding punctuation and
    collapsing inner whitespace; case-insensitive unless ``"case_sensitive": true``;
  - ``{"regex": "\\\\bParis\\\\b", "flags": "i"}``: ``re.search`` (``"fullmatch": true`` for the
    whole reply); flags from ``imsx``;
  - ``{"number": 2.54, "tolerance": 0.01}``: the last number in the reply (``"pick": "first"``
    for the first; small models restate the question, "3 + 4 = 7", so the last is the answer)
    within an absolute ``tolerance`` and/or ``rel_tolerance`` (default: equal); ``1,000`` is 1000;
  - ``{"choice": "B", "letters": "ABC"}``: a multiple-choice letter (``B``, ``(B)``, ``B)``,
    ``B.``, ``Answer: B``, ``the answer is B``); ``letters`` defaults to ``ABCD``;
  - ``{"scorer": "module:function", "args": {...}}``: ``function(reply, **args) -> bool``; the
    module is looked up first as a ``.py`` file beside the task file, then on ``sys.path``.
    Generic scorers ship here: ``pytest_engineparity.checks.quality:json_object``, ``comma_list``,
    ``word_count``, ``all_caps``;

* ``task`` (optional): the task the item belongs to; default: the file's name without ``.jsonl``;
* ``id`` (optional): the item's label; default ``<file stem>:<line>``.

A malformed line is a :class:`TaskFileError` naming the file and line. Everything is checked at
load time (regexes compiled, scorers imported and their arguments bound), before any engine runs.

All items are registered with the session and sent to each engine as one batch with whatever
else is pending; the scores read the session's cached results. A reply is scored as given; an
engine error on an item counts as a wrong answer and is listed as such.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Union

from ..prompts import PromptFileError, iter_jsonl, request_from_body
from ..types import Completion, GenerationRequest

if TYPE_CHECKING:  # pragma: no cover
    from .context import CheckContext
    from .stats import PairedAccuracyVerdict

__all__ = [
    "TaskFileError",
    "TaskScoreError",
    "Scorer",
    "TaskItem",
    "TaskSet",
    "ItemOutcome",
    "TaskResult",
    "QualityChecks",
    "parse_scorer",
    "load_tasks",
    "resolve_task_sources",
    "evaluate_task",
    "html_section",
    "json_object",
    "comma_list",
    "word_count",
    "all_caps",
]

SCORE_KINDS = ("exact", "regex", "number", "choice", "scorer")
_KIND_KEYS = {
    "exact": {"exact", "case_sensitive"},
    "regex": {"regex", "flags", "fullmatch"},
    "number": {"number", "tolerance", "rel_tolerance", "pick"},
    "choice": {"choice", "letters"},
    "scorer": {"scorer", "args"},
}
TASK_FIELDS = {"score", "task"}  # the task-only fields of a line; the rest is the request
POOLED = "all"  # name of the pooled check over every task of a call (reserved as a task name)
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


class TaskFileError(PromptFileError):
    """A task file (or task item) that cannot be used; the message names the file and line."""


class TaskScoreError(RuntimeError):
    """A Python scorer raised or returned something other than a bool while grading a reply."""


# --------------------------------------------------------------------------------------------
# reading replies


_NUMBER = re.compile(r"(?<![\w.])([-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")
_TRIM = " \t\r\n\"'`*_.!?,;:()[]{}\u201c\u201d\u2018\u2019"


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text``, in order (``1,000`` is 1000; digits inside a word such as
    ``H2O`` are not numbers)."""
    out = []
    for m in _NUMBER.finditer(text):
        s = m.group(1).replace(",", "").replace("\u2212", "-")
        out.append(float(s))
    return out


def normalize_answer(text: str, case_sensitive: bool = False) -> str:
    """Trim whitespace, quotes, markdown emphasis and surrounding punctuation; collapse spaces."""
    s = re.sub(r"\s+", " ", text.strip(_TRIM)).strip(_TRIM)
    return s if case_sensitive else s.casefold()


def choice_letter(text: str, letters: str = "ABCD") -> Optional[str]:
    """The multiple-choice letter a reply gives, or None.

    In order: a reply that starts with the letter (``B``, ``B)``, ``B.``, ``B:``, ``(B)``,
    ``**B**``); ``answer is B`` / ``answer: B`` anywhere; ``(B)`` anywhere; a line that is only
    the letter. A reply starting with the article "A" followed by a word is not the letter A.
    """
    cls = "[" + re.escape(letters) + "]"
    s = text.strip().lstrip("*_ ")
    m = re.match(rf"^\(?({cls})(?:$|[).:,\]*_]|\s*[-\u2013]\s)", s)
    if m:
        return m.group(1)
    m = re.search(rf"answer(?: is)?\s*[:=]?\s*\**\(?({cls})\b", text, re.IGNORECASE)
    if m and m.group(1) in letters:
        return m.group(1)
    m = re.search(rf"\(({cls})\)", text)
    if m:
        return m.group(1)
    for line in text.splitlines():
        if line.strip().strip("*_.") in letters and len(line.strip().strip("*_.")) == 1:
            return line.strip().strip("*_.")
    return None


# --------------------------------------------------------------------------------------------
# generic scorers for format-following tasks: ``{"scorer": "pytest_engineparity.checks.quality:NAME"}``


def _unfence(text: str) -> str:
    s = text.strip()
    m = re.match(r"^```[A-Za-z0-9]*\s*\n?(.*?)\n?```$", s, re.DOTALL)
    return m.group(1).strip() if m else s


def json_object(text: str, keys: Sequence[str] = (), values: Optional[dict] = None) -> bool:
    """The reply is one JSON object (optionally in a single code fence) that has ``keys`` and
    whose ``values`` equal the given ones."""
    try:
        obj = json.loads(_unfence(text))
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    if any(k not in obj for k in keys):
        return False
    return all(k in obj and obj[k] == v for k, v in (values or {}).items())


def comma_list(text: str, count: int, max_words: int = 3) -> bool:
    """The reply is one line of exactly ``count`` comma-separated items of 1..``max_words`` words
    each (a final period is allowed), and nothing else."""
    s = text.strip()
    if "\n" in s:
        return False
    s = s[:-1] if s.endswith(".") else s
    items = [x.strip() for x in s.split(",")]
    if items and items[-1].lower().startswith("and "):
        items[-1] = items[-1][4:].strip()
    if len(items) != count:
        return False
    return all(x and 1 <= len(x.split()) <= max_words and not re.search(r"[.:;!?]", x) for x in items)


def word_count(text: str, count: int) -> bool:
    """The reply is one line of exactly ``count`` words (punctuation ignored)."""
    s = text.strip()
    if "\n" in s:
        return False
    return len(re.findall(r"[^\W_]+(?:['\u2019\-][^\W_]+)*", s)) == count


def all_caps(text: str) -> bool:
    """The reply has letters and none of them is lower case."""
    s = text.strip()
    return any(c.isalpha() for c in s) and not any(c.islower() for c in s)


# --------------------------------------------------------------------------------------------
# task items


@dataclass(frozen=True)
class Scorer:
    """How one item is graded: ``kind`` and the ``spec`` as written in the task file."""

    kind: str
    spec: dict
    check: Callable[[str], bool] = field(repr=False, compare=False)

    def __call__(self, text: str) -> bool:
        return self.check(text)

    def describe(self) -> str:
        s = self.spec
        if self.kind == "exact":
            want = s["exact"] if isinstance(s["exact"], list) else [s["exact"]]
            return "exact " + " | ".join(repr(w) for w in want) + (" (case-sensitive)" if s.get("case_sensitive") else "")
        if self.kind == "regex":
            return f"regex /{s['regex']}/{s.get('flags', '')}" + (" (full match)" if s.get("fullmatch") else "")
        if self.kind == "number":
            tol = []
            if s.get("tolerance"):
                tol.append(f"± {s['tolerance']:g}")
            if s.get("rel_tolerance"):
                tol.append(f"± {s['rel_tolerance'] * 100:g}%")
            return f"number {s['number']:g}" + (" " + " or ".join(tol) if tol else "") + f" ({s.get('pick', 'last')})"
        if self.kind == "choice":
            return f"choice {s['choice']} of {s.get('letters', 'ABCD')}"
        args = s.get("args") or {}
        return f"scorer {s['scorer']}" + (f"({', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else "")


def _kind_of(spec: Any, where: str) -> str:
    if not isinstance(spec, dict):
        raise TaskFileError(f"{where}: 'score' must be an object such as {{\"exact\": \"Paris\"}}, "
                            f"got {type(spec).__name__}")
    kinds = [k for k in SCORE_KINDS if k in spec]
    if len(kinds) != 1:
        got = f"{kinds}" if kinds else f"none (keys: {sorted(spec)})"
        raise TaskFileError(f"{where}: 'score' needs exactly one of {', '.join(SCORE_KINDS)}; got {got}")
    kind = kinds[0]
    extra = set(spec) - _KIND_KEYS[kind]
    if extra:
        raise TaskFileError(f"{where}: unknown key(s) {sorted(extra)} for a {kind!r} score; "
                            f"known: {sorted(_KIND_KEYS[kind])}")
    return kind


def _bool_key(spec: dict, key: str, where: str) -> bool:
    v = spec.get(key, False)
    if not isinstance(v, bool):
        raise TaskFileError(f"{where}: score {key!r} must be true or false, got {v!r}")
    return v


def _finite(v: Any, what: str, where: str, nonneg: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (nonneg and v < 0):
        raise TaskFileError(f"{where}: {what} must be a {'non-negative ' if nonneg else ''}finite number, got {v!r}")
    return float(v)


_LOADED: dict[str, Any] = {}  # scorer modules loaded from a file beside a task file, by path


def _import_scorer(ref: Any, base_dir: Optional[Path], where: str) -> Callable[..., Any]:
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise TaskFileError(f"{where}: scorer must be 'module:function', got {ref!r}")
    mod_name, fn_name = ref.split(":")
    module: Any = None
    local = base_dir / (mod_name.replace(".", os.sep) + ".py") if base_dir is not None else None
    try:
        if local is not None and local.is_file():
            key = str(local.resolve())
            module = _LOADED.get(key)
            if module is None:
                name = "_engineparity_scorer_" + hashlib.sha256(key.encode()).hexdigest()[:12]
                spec = importlib.util.spec_from_file_location(name, local)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                _LOADED[key] = module
        else:
            module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        looked = f" (no {local} beside the task file either)" if local is not None else ""
        raise TaskFileError(f"{where}: scorer {ref!r}: cannot import {mod_name!r}: {exc}{looked}") from None
    except Exception as exc:  # the scorer module itself is broken: say so, with its error
        raise TaskFileError(f"{where}: scorer {ref!r}: importing {mod_name!r} failed: "
                            f"{type(exc).__name__}: {exc}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise TaskFileError(f"{where}: scorer {ref!r}: {mod_name!r} has no function {fn_name!r}")
    return fn


def parse_scorer(spec: Any, where: str = "score", base_dir: Optional[Path] = None) -> Scorer:
    """Check a ``score`` object and build its grading function (errors name ``where``)."""
    kind = _kind_of(spec, where)
    spec = dict(spec)
    if kind == "exact":
        want = spec["exact"]
        answers = want if isinstance(want, list) else [want]
        if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise TaskFileError(f"{where}: 'exact' must be a non-empty string or a list of them, got {want!r}")
        cs = _bool_key(spec, "case_sensitive", where)
        norm = {normalize_answer(a, cs) for a in answers}
        return Scorer(kind, spec, lambda t: normalize_answer(t, cs) in norm)
    if kind == "regex":
        pat, flags = spec["regex"], spec.get("flags", "")
        if not isinstance(pat, str) or not pat:
            raise TaskFileError(f"{where}: 'regex' must be a non-empty string, got {pat!r}")
        if not isinstance(flags, str) or set(flags) - set(_REGEX_FLAGS):
            raise TaskFileError(f"{where}: regex 'flags' must be letters from 'imsx', got {flags!r}")
        bits = 0
        for f in flags:
            bits |= _REGEX_FLAGS[f]
        try:
            rx = re.compile(pat, bits)
        except re.error as exc:
            raise TaskFileError(f"{where}: bad regex {pat!r}: {exc}") from None
        full = _bool_key(spec, "fullmatch", where)
        if full:
            return Scorer(kind, spec, lambda t: rx.fullmatch(t.strip()) is not None)
        return Scorer(kind, spec, lambda t: rx.search(t) is not None)
    if kind == "number":
        target = _finite(spec["number"], "'number'", where)
        tol = _finite(spec.get("tolerance", 0), "'tolerance'", where, nonneg=True)
        rel = _finite(spec.get("rel_tolerance", 0), "'rel_tolerance'", where, nonneg=True)
        pick = spec.get("pick", "last")
        if pick not in ("first", "last"):
            raise TaskFileError(f"{where}: number 'pick' must be 'first' or 'last', got {pick!r}")
        bound = max(tol, rel * abs(target), 1e-9 * max(1.0, abs(target)))

        def num(t: str) -> bool:
            found = numbers_in(t)
            if not found:
                return False
            return abs((found[0] if pick == "first" else found[-1]) - target) <= bound
        return Scorer(kind, spec, num)
    if kind == "choice":
        letters = spec.get("letters", "ABCD")
        if not isinstance(letters, str) or not re.fullmatch(r"[A-Z]{2,26}", letters) or len(set(letters)) != len(letters):
            raise TaskFileError(f"{where}: choice 'letters' must be 2 or more distinct capitals such as 'ABCD', got {letters!r}")
        ans = spec["choice"]
        if not isinstance(ans, str) or len(ans) != 1 or ans not in letters:
            raise TaskFileError(f"{where}: 'choice' must be one of the letters {letters!r}, got {ans!r}")
        return Scorer(kind, spec, lambda t: choice_letter(t, letters) == ans)
    # a Python scorer
    args = spec.get("args", {})
    if not isinstance(args, dict):
        raise TaskFileError(f"{where}: scorer 'args' must be an object, got {type(args).__name__}")
    fn = _import_scorer(spec["scorer"], base_dir, where)
    try:
        inspect.signature(fn).bind("reply", **args)
    except TypeError as exc:
        raise TaskFileError(f"{where}: scorer {spec['scorer']!r} cannot be called as "
                            f"f(reply, **{args!r}): {exc}") from None
    except ValueError:  # no signature to inspect (a builtin): checked when it runs
        pass
    ref = spec["scorer"]

    def call(t: str) -> bool:
        try:
            r = fn(t, **args)
        except Exception as exc:
            raise TaskScoreError(f"scorer {ref!r} raised {type(exc).__name__}: {exc} on reply {t[:200]!r}") from exc
        if type(r).__name__ in ("bool", "bool_") or (isinstance(r, int) and r in (0, 1)):
            return bool(r)
        raise TaskScoreError(f"scorer {ref!r} returned {r!r} ({type(r).__name__}), not a bool, on reply {t[:200]!r}")
    return Scorer(kind, spec, call)


@dataclass(frozen=True)
class TaskItem:
    """One labelled item: the request both engines run, and how the reply is graded."""

    task: str
    id: str
    request: GenerationRequest
    scorer: Scorer
    where: str = ""  # file:line

    def prompt_text(self) -> str:
        r = self.request
        if r.messages is not None:
            return str(r.messages[-1].get("content", ""))
        if r.prompt is not None:
            return r.prompt
        return f"<{len(r.prompt_token_ids or ())} token ids>"


@dataclass
class TaskSet:
    name: str
    items: list
    source: str = ""

    def __len__(self) -> int:
        return len(self.items)


def parse_task_line(body: Any, where: str, default_task: str, default_id: str,
                    default_max_tokens: int = 64, base_dir: Optional[Path] = None) -> TaskItem:
    if not isinstance(body, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(body).__name__}")
    if "score" not in body:
        raise TaskFileError(f"{where}: needs a 'score' object saying how to grade the reply, one of "
                            f"{', '.join(SCORE_KINDS)} (e.g. {{\"exact\": \"Paris\"}})")
    task = body.get("task", default_task)
    if not isinstance(task, str) or not _TASK_NAME.match(task):
        raise TaskFileError(f"{where}: 'task' must be a name of letters, digits, '_', '.', '-', got {task!r}")
    if task == POOLED:
        raise TaskFileError(f"{where}: task name {POOLED!r} is reserved for the pooled check over all tasks")
    scorer = parse_scorer(body["score"], where, base_dir)
    req_body = {k: v for k, v in body.items() if k not in TASK_FIELDS}
    try:
        req = request_from_body(req_body, default_max_tokens, where)
    except PromptFileError as exc:
        raise TaskFileError(str(exc)) from None
    item_id = req.id or default_id
    if req.id is None:
        req = req.replace(id=item_id)
    return TaskItem(task, item_id, req, scorer, where)


def load_tasks(path: Union[str, Path], default_max_tokens: int = 64) -> list[TaskSet]:
    """Read a JSONL task file (or every ``*.jsonl`` of a directory, sorted): one TaskSet per task
    name, in order of first appearance. Blank lines and lines starting with ``//`` are skipped."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.jsonl"))
        if not files:
            raise TaskFileError(f"task directory {str(path)!r} has no *.jsonl files")
        return _merge([ts for f in files for ts in load_tasks(f, default_max_tokens)])
    if not p.is_file():
        raise TaskFileError(f"task file {str(path)!r} does not exist")
    sets: dict[str, TaskSet] = {}
    ids: dict[tuple[str, str], str] = {}
    keys: dict[tuple[str, str], str] = {}
    for n, where, body in iter_jsonl(p, TaskFileError):
        item = parse_task_line(body, where, p.stem, f"{p.stem}:{n}", default_max_tokens, p.parent)
        if (item.task, item.id) in ids:
            raise TaskFileError(f"{where}: duplicate id {item.id!r} in task {item.task!r} "
                                f"(first at line {ids[(item.task, item.id)].rsplit(':', 1)[-1]})")
        k = (item.task, item.request.key())
        if k in keys:
            raise TaskFileError(f"{where}: the same request as line {keys[k].rsplit(':', 1)[-1]} in task "
                                f"{item.task!r}; a repeated item would count twice")
        ids[(item.task, item.id)] = where
        keys[k] = where
        sets.setdefault(item.task, TaskSet(item.task, [], str(p))).items.append(item)
    if not sets:
        raise TaskFileError(f"{p}: no task items in the file")
    return list(sets.values())


def _merge(sets: Iterable[TaskSet]) -> list[TaskSet]:
    out: dict[str, TaskSet] = {}
    for ts in sets:
        if ts.name == POOLED:
            raise TaskFileError(f"task name {POOLED!r} ({ts.source}) is reserved for the pooled check over all tasks")
        if ts.name in out:
            raise TaskFileError(f"task {ts.name!r} comes from two places ({out[ts.name].source} and "
                                f"{ts.source}); give each task set one file or distinct 'task' names")
        out[ts.name] = ts
    return list(out.values())


TaskSource = Union[str, Path, TaskSet, TaskItem]


def resolve_task_sources(sources: Union[TaskSource, Iterable[TaskSource]], default_max_tokens: int = 64,
                         rootdir: Optional[str] = None) -> list[TaskSet]:
    """Paths (files or directories), TaskSets and TaskItems -> TaskSets, one per task name."""
    if isinstance(sources, (str, Path, TaskSet, TaskItem)):
        sources = [sources]
    sets: list[TaskSet] = []
    loose: dict[str, TaskSet] = {}
    for src in sources:
        if isinstance(src, TaskSet):
            sets.append(src)
        elif isinstance(src, TaskItem):
            loose.setdefault(src.task, TaskSet(src.task, [], "<items>")).items.append(src)
        elif isinstance(src, (str, Path)):
            p = Path(src)
            if not p.is_absolute() and not p.exists() and rootdir:
                p = Path(rootdir) / p
            sets.extend(load_tasks(p, default_max_tokens))
        else:
            raise TypeError(f"task source must be a path, TaskSet or TaskItem, got {type(src).__name__}")
    out = _merge(sets + list(loose.values()))
    for ts in out:
        if not ts.items:
            raise TaskFileError(f"task {ts.name!r} has no items")
    return out


# --------------------------------------------------------------------------------------------
# scoring and the paired verdict


@dataclass
class ItemOutcome:
    id: str
    task: str
    prompt: str
    expected: str
    reference: str
    candidate: str
    ref_correct: bool
    cand_correct: bool
    ref_error: Optional[str] = None
    cand_error: Optional[str] = None
    where: str = ""

    @property
    def lost(self) -> bool:
        """The candidate got it wrong and the reference right."""
        return self.ref_correct and not self.cand_correct

    @property
    def gained(self) -> bool:
        return self.cand_correct and not self.ref_correct

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lost"], d["gained"] = self.lost, self.gained
        return d


def _score(item: TaskItem, c: Completion) -> bool:
    return c.ok and item.scorer(c.text)


def _one_line(s: str, width: int = 100) -> str:
    s = s.replace("\n", "\u21b5")
    return s if len(s) <= width else s[: width - 1] + "\u2026"


@dataclass
class TaskResult:
    """One task's paired comparison: the stats verdict, every item's outcome, the check verdict."""

    task: str
    source: str
    outcomes: list
    stats: "PairedAccuracyVerdict"
    ref_name: str = "reference"
    cand_name: str = "candidate"

    @property
    def verdict(self) -> str:
        return self.stats.verdict

    @property
    def check_verdict(self) -> str:
        return {"equivalent": "pass", "worse": "fail"}.get(self.stats.verdict, "inconclusive")

    @property
    def discordant(self) -> list:
        """Items the engines disagree on: the candidate's losses first, then its gains."""
        return [o for o in self.outcomes if o.lost] + [o for o in self.outcomes if o.gained]

    @property
    def lost(self) -> list:
        return [o for o in self.outcomes if o.lost]

    def summary(self) -> str:
        v = self.stats
        lo, hi = v.ref_ci
        clo, chi = v.cand_ci
        conf = f"{(1 - v.alpha) * 100:g}%"
        return (f"{v.message}; {self.ref_name} {v.ref_correct}/{v.n} = {v.ref_accuracy:.1%} "
                f"({conf} CI {lo:.1%}-{hi:.1%}), {self.cand_name} {v.cand_correct}/{v.n} = {v.cand_accuracy:.1%} "
                f"({conf} CI {clo:.1%}-{chi:.1%}); power {v.power_if_equal:.0%} to show equivalence at "
                f"this size if equally accurate")

    def explain(self, limit: int = 10) -> str:
        lines = [f"quality:{self.task} ({self.source}): {self.summary()}"]
        disc = self.discordant
        for o in disc[:limit]:
            tag = "LOST  " if o.lost else "gained"
            lines.append(f"  {tag} {o.id}: {_one_line(o.prompt, 70)!s}  expected {o.expected}")
            lines.append(f"         {self.ref_name} ({'right' if o.ref_correct else 'wrong'}): "
                         f"{_one_line(o.ref_error and 'ERROR ' + o.ref_error or o.reference)!r}")
            lines.append(f"         {self.cand_name} ({'right' if o.cand_correct else 'wrong'}): "
                         f"{_one_line(o.cand_error and 'ERROR ' + o.cand_error or o.candidate)!r}")
        if len(disc) > limit:
            lines.append(f"  ... and {len(disc) - limit} more discordant items (all in the report)")
        return "\n".join(lines)

    def numbers(self) -> dict[str, Any]:
        d = self.stats.to_dict()
        d.update({"task": self.task, "source": self.source,
                  "lost": [o.id for o in self.lost],
                  "gained": [o.id for o in self.outcomes if o.gained],
                  "ref_errors": sum(o.ref_error is not None for o in self.outcomes),
                  "cand_errors": sum(o.cand_error is not None for o in self.outcomes)})
        return d

    def to_dict(self) -> dict[str, Any]:
        return {**self.numbers(), "check_verdict": self.check_verdict, "summary": self.summary(),
                "reference": self.ref_name, "candidate": self.cand_name,
                "discordant": [o.to_dict() for o in self.discordant],
                "items": [{"id": o.id, "ref_correct": o.ref_correct, "cand_correct": o.cand_correct}
                          for o in self.outcomes]}


def evaluate_task(name: str, pairs: Sequence[tuple[TaskItem, Completion, Completion]], max_drop: float = 0.01,
                  alpha: float = 0.05, source: str = "", ref_name: str = "reference",
                  cand_name: str = "candidate", alpha_equivalence: Optional[float] = None) -> TaskResult:
    """Score each item on both engines and compare the paired outcomes (``max_drop`` a fraction)."""
    from .stats import paired_accuracy

    outcomes = []
    for item, ref, cand in pairs:
        outcomes.append(ItemOutcome(
            id=item.id, task=item.task, prompt=item.prompt_text(), expected=item.scorer.describe(),
            reference=ref.text, candidate=cand.text, ref_correct=_score(item, ref), cand_correct=_score(item, cand),
            ref_error=ref.error, cand_error=cand.error, where=item.where))
    v = paired_accuracy([o.ref_correct for o in outcomes], [o.cand_correct for o in outcomes],
                        max_drop=max_drop, alpha=alpha, alpha_equivalence=alpha_equivalence)
    return TaskResult(name, source, outcomes, v, ref_name, cand_name)


def holm_worse(results: Sequence["TaskResult"], alpha: float) -> list["TaskResult"]:
    """Holm's step-down over the results' "worse" p-values (one gate, several tasks): a task stays
    ``worse`` only if Holm rejects it at family level ``alpha``; the others become inconclusive."""
    import dataclasses

    m = len(results)
    order = sorted(range(m), key=lambda i: results[i].stats.p_worse)
    rejected = set()
    for rank, i in enumerate(order):
        if results[i].stats.p_worse < alpha / (m - rank):
            rejected.add(i)
        else:
            break
    out = []
    for i, r in enumerate(results):
        if r.stats.verdict == "worse" and i not in rejected:
            st = dataclasses.replace(r.stats, verdict="inconclusive", message=r.stats.message.replace(
                "worse:", "inconclusive (a drop that does not survive Holm's correction over the tasks):", 1))
            r = dataclasses.replace(r, stats=st)
        out.append(r)
    return out


# --------------------------------------------------------------------------------------------
# the EnginePair mixin


class QualityChecks:
    """The quality check family (``engine_pair.quality``): parity on labelled tasks.

    ``assert_quality_parity(tasks)`` scores every item on both engines (one batch per engine via
    the session), records one check per task (``quality:<task>``) plus a pooled ``quality:all``
    when there are several, fills the report's ``quality`` section, and raises ParityMismatch if
    any is ``worse`` (or, with ``strict=True``, ``inconclusive``).
    """


    name = "quality"

    section = "quality"  # the report section this family owns (JSON key; HTML by ``render_html``)

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    @staticmethod
    def render_html(doc: Any) -> str:
        return html_section(doc)

    @staticmethod
    def validate_options(cfg: Any, rootdir: str) -> None:
        """At start, before any engine: a bad ``--parity-tasks`` is a usage error naming it."""
        from ..errors import ConfigError

        if not cfg.tasks:
            return
        try:
            resolve_task_sources(cfg.tasks, cfg.max_tokens, rootdir)  # the resolution the family uses later
        except (TaskFileError, OSError) as exc:
            raise ConfigError(f"--parity-tasks: {exc}") from None

    def _task_sets(self, tasks: Any) -> list[TaskSet]:
        cfg = self._ctx.cfg
        if cfg.tasks:  # --parity-tasks replaces the task sets a test names, like --parity-prompts
            tasks = cfg.tasks
        if tasks is None:
            raise TaskFileError("no tasks: pass a task file, directory or items, or set --parity-tasks")
        return resolve_task_sources(tasks, cfg.max_tokens, cfg.rootdir)

    def _quality_settings(self, max_drop: Optional[float], confidence: Optional[float]) -> tuple[float, float]:
        points = self._ctx.cfg.max_quality_drop if max_drop is None else float(max_drop)
        if not 0.0 <= points < 100.0:
            raise ValueError(f"max_drop is in percentage points and must be in [0, 100), got {max_drop!r}")
        conf = self._ctx.cfg.confidence if confidence is None else float(confidence)
        if not 0.5 < conf < 1.0:
            raise ValueError(f"confidence must be in (0.5, 1) for the paired tests, got {conf!r}")
        return points, conf

    def quality_results(self, tasks: Any = None, max_drop: Optional[float] = None,
                        confidence: Optional[float] = None) -> list[TaskResult]:
        """Run and score the tasks (no checks recorded). ``max_drop`` in percentage points
        (default ``--parity-max-quality-drop``); ``confidence`` default ``--parity-confidence``.
        With several tasks the last result is the pooled one, named ``all``."""
        points, conf = self._quality_settings(max_drop, confidence)
        alpha = self._ctx.cfg.alpha_per_decision
        sets = self._task_sets(tasks)
        items = [it for ts in sets for it in ts.items]
        self._ctx.register([it.request for it in items], aux=True)
        self._ctx.run_pending()  # everything pending goes to each engine as one batch
        ref_res, cand_res = self._ctx.completions("reference"), self._ctx.completions("candidate")
        names = (self._ctx.reference.name, self._ctx.candidate.name)
        out = []
        for ts in sets:
            pairs = [(it, ref_res[it.request.key()], cand_res[it.request.key()]) for it in ts.items]
            out.append(evaluate_task(ts.name, pairs, points / 100.0, alpha, ts.source, *names,
                                     alpha_equivalence=1.0 - conf))
        if len(out) > 1:
            pooled_outcomes = [o for r in out for o in r.outcomes]
            from .stats import paired_accuracy

            v = paired_accuracy([o.ref_correct for o in pooled_outcomes], [o.cand_correct for o in pooled_outcomes],
                                max_drop=points / 100.0, alpha=alpha, alpha_equivalence=1.0 - conf)
            # two decisions: the pooled test at the gate's alpha share, and the tasks at another
            # share with Holm over them (a drop confined to one task is still found)
            return holm_worse(out, alpha) + [TaskResult(POOLED, ", ".join(r.task for r in out), pooled_outcomes, v, *names)]
        return out

    def assert_quality_parity(self, tasks: Any = None, *, max_drop: Optional[float] = None,
                              confidence: Optional[float] = None, strict: bool = False) -> list[TaskResult]:
        """Quality parity per task: ``equivalent`` passes, ``worse`` fails, ``inconclusive`` is
        recorded as an ``inconclusive`` check (shown as the step's worst finding, with the number
        of items that would settle it) and fails only with ``strict=True``.

        ``tasks``: a task file, a directory of them, TaskSets or TaskItems (or a list of these);
        ``--parity-tasks`` replaces them when given.
        """
        results = self.quality_results(tasks, max_drop, confidence)
        points, conf = self._quality_settings(max_drop, confidence)
        section = self._ctx.section("quality", lambda: {"tasks": []})
        section.update({"max_drop_points": points, "confidence": conf, "strict": bool(strict),
                        "reference": self._ctx.reference.name, "candidate": self._ctx.candidate.name})
        by_name = {t["task"]: i for i, t in enumerate(section["tasks"])}
        for r in results:
            d = r.to_dict()
            if r.task in by_name:
                section["tasks"][by_name[r.task]] = d
            else:
                section["tasks"].append(d)
            lost = ", ".join(o.id for o in r.lost[:10]) + (f" (+{len(r.lost) - 10} more)" if len(r.lost) > 10 else "")
            # one gate: the pooled verdict (or the only task); per-task verdicts are findings that
            # fail the step only when a task is shown worse (Holm over the tasks)
            gating = r.task == POOLED or len(results) == 1
            counted = gating or r is results[0]  # the tasks' Holm family counts as one decision
            self._ctx.record(f"quality:{r.task}", r.check_verdict, r.summary() + (f"; lost: {lost}" if lost else ""),
                             {**r.numbers(), "gating": gating,
                              **({"alpha_fail": self._ctx.cfg.alpha_per_decision} if counted else {})})
            self._ctx.properties.append((f"quality_{r.task}", r.verdict))
        bad = [r for r in results if r.verdict == "worse" or (strict and r.verdict == "inconclusive")]
        if bad:
            kinds = sorted({r.verdict for r in bad})
            head = (f"quality parity failed ({' / '.join(kinds)}; allowed drop {_points(points)}, "
                    f"confidence {conf:g}): " + ", ".join(f"{r.task} {r.verdict}" for r in bad))
            # the pooled result repeats the tasks' items: its numbers only
            raise _mismatch("\n".join([head, ""] + [r.explain(0 if r.task == POOLED else 10) + "\n" for r in bad]))
        return results


def _points(x: float) -> str:
    return f"{x:g} percentage point{'' if x == 1 else 's'}"


def _mismatch(msg: str) -> AssertionError:
    from ..errors import ParityMismatch

    return ParityMismatch(msg)


# --------------------------------------------------------------------------------------------
# HTML


def _svg_drops(tasks: list, margin: float) -> str:
    """One row per task: the drop's (1 - 2 alpha) interval against 0 and the allowed drop."""
    rows = [t for t in tasks if t.get("drop_low") is not None]
    if not rows:
        return ""
    lo = min([-0.05, -margin] + [t["drop_low"] for t in rows])
    hi = max([0.05, margin * 1.5] + [t["drop_high"] for t in rows])
    W, left, right, rh, top = 560, 130, 20, 22, 20
    H = top + rh * len(rows) + 24

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (W - left - right)

    parts = [f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{H - 20}" stroke="#999"/>',
             f'<line x1="{x(margin):.1f}" y1="{top - 8}" x2="{x(margin):.1f}" y2="{H - 20}" stroke="#c0392b" '
             f'stroke-dasharray="4"/><text x="{x(margin) + 3:.1f}" y="{top - 10}" font-size="11" fill="#c0392b">'
             f'allowed drop {margin * 100:g} pts</text>']
    colors = {"equivalent": "#2e7d32", "worse": "#b00020", "inconclusive": "#b26a00"}
    for i, t in enumerate(rows):
        y = top + rh * i + rh / 2
        c = colors.get(t["verdict"], "#333")
        parts.append(f'<text x="4" y="{y + 4:.1f}" font-size="12">{html.escape(t["task"])}</text>'
                     f'<line x1="{x(t["drop_low"]):.1f}" y1="{y:.1f}" x2="{x(t["drop_high"]):.1f}" y2="{y:.1f}" '
                     f'stroke="{c}" stroke-width="3"><title>{html.escape(t["verdict"])}: drop '
                     f'{t["drop"] * 100:.1f} pts, interval {t["drop_low"] * 100:.1f} to {t["drop_high"] * 100:.1f}</title></line>'
                     f'<circle cx="{x(t["drop"]):.1f}" cy="{y:.1f}" r="4" fill="{c}"/>')
    parts.append(f'<text x="{left}" y="{H - 6}" font-size="11">drop {lo * 100:.0f} pts</text>'
                 f'<text x="{W - right - 60}" y="{H - 6}" font-size="11">{hi * 100:.0f} pts</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
            f'aria-label="accuracy drop per task">{"".join(parts)}</svg>')


def html_section(doc: dict) -> str:
    """The report's quality section: per task, each engine's accuracy with its CI, the paired
    verdict and power, a drop-interval chart, and the discordant items (losses first)."""
    e = html.escape
    q = doc.get("quality") or {}
    tasks = q.get("tasks") or []
    if not tasks:
        return ""
    ref, cand = q.get("reference", "reference"), q.get("candidate", "candidate")
    conf = q.get("confidence", 0.95)

    def pct(v: float) -> str:
        return f"{v * 100:.1f}%"

    rows = []
    for t in tasks:
        need = f"need about {t['items_needed']} items" if t.get("items_needed") else ""
        rows.append(
            f"<tr class='{e(t['check_verdict'])}'><td>{e(t['task'])}</td><td>{t['n']}</td>"
            f"<td>{pct(t['ref_accuracy'])} [{pct(t['ref_ci'][0])}, {pct(t['ref_ci'][1])}]</td>"
            f"<td>{pct(t['cand_accuracy'])} [{pct(t['cand_ci'][0])}, {pct(t['cand_ci'][1])}]</td>"
            f"<td>{pct(t['drop'])} [{pct(t['drop_low'])}, {pct(t['drop_high'])}]</td>"
            f"<td>{t['b']} / {t['c']}</td><td>{t['mcnemar_p']:.3g}</td><td>{pct(t['power_if_equal'])}</td>"
            f"<td>{e(t['verdict'])}{(' — ' + e(need)) if need else ''}</td></tr>")
    details = []
    for t in tasks:
        if t["task"] == POOLED or not t.get("discordant"):
            continue
        items = "".join(
            f"<tr class='{'fail' if o['lost'] else 'pass'}'><td>{'lost' if o['lost'] else 'gained'}</td>"
            f"<td>{e(o['id'])}</td><td><pre>{e(o['prompt'])}</pre></td><td>{e(o['expected'])}</td>"
            f"<td><pre>{e(o['ref_error'] and 'ERROR ' + o['ref_error'] or o['reference'])}</pre></td>"
            f"<td><pre>{e(o['cand_error'] and 'ERROR ' + o['cand_error'] or o['candidate'])}</pre></td></tr>"
            for o in t["discordant"])
        details.append(f"<details{' open' if t['verdict'] == 'worse' else ''}><summary>{e(t['task'])}: "
                       f"{len(t['lost'])} lost, {len(t['gained'])} gained</summary><table><tr><th></th><th>item</th>"
                       f"<th>prompt</th><th>expected</th><th>{e(ref)}</th><th>{e(cand)}</th></tr>{items}</table></details>")
    ci = f"{conf * 100:g}% CI"
    return (f"<h2>Quality on labelled tasks</h2><p>Allowed accuracy drop: {_points(q.get('max_drop_points', 1))}; "
            f"equivalent = a drop that large is ruled out at confidence {conf:g}; worse = a "
            f"larger drop is shown; inconclusive = neither{' (fails: strict)' if q.get('strict') else ' (recorded, does not fail)'}. "
            f"Power: chance this many items shows equivalence if both engines were equally accurate.</p>"
            f"<table><tr><th>task</th><th>items</th><th>{e(ref)} accuracy [{ci}]</th><th>{e(cand)} accuracy [{ci}]</th>"
            f"<th>drop [{(2 * conf - 1) * 100:g}% CI]</th><th>lost / gained</th><th>McNemar exact p</th><th>power</th>"
            f"<th>verdict</th></tr>{''.join(rows)}</table>{_svg_drops(tasks, q.get('max_drop_points', 1) / 100)}"
            f"{''.join(details)}")
