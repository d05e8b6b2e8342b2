"""Quality parity on labelled tasks, without a model: task files, scorers, and the paired verdict
through the real session and EnginePair over two real engine workers with scripted replies
(``tests/scripted_engine.py``): per-item outcomes fixed here, plus replies SmolLM2-135M-Instruct
really gave on the built-in capitals task. Nothing is written into the session's results."""

import json
import math
from pathlib import Path

import pytest

from pytest_engineparity.checks.stats import proportion_interval
from scipy import stats as st

from pytest_engineparity.config import build_config
from pytest_engineparity.pair import EnginePair, make_recorder
from pytest_engineparity.checks.quality import (
    TaskFileError,
    TaskScoreError,
    all_caps,
    choice_letter,
    comma_list,
    html_section,
    json_object,
    load_tasks,
    numbers_in,
    parse_scorer,
    resolve_task_sources,
    word_count,
)
from pytest_engineparity.report import write_html
from pytest_engineparity.session import ParityMismatch, ParitySession
from pytest_engineparity.types import Completion

TASKS = Path(__file__).resolve().parent.parent / "suites" / "tasks"


# --------------------------------------------------------------------------------------------
# helpers: a real session over two real engine workers with scripted replies
# (tests/scripted_engine.py): the replies recorded here are what each engine answers, sent as one
# batch per engine like any suite


HERE = Path(__file__).resolve().parent


def _toml_table(d: dict) -> str:
    return "{ " + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {json.dumps(v, ensure_ascii=False)}"
                            for k, v in d.items()) + " }"


class ScriptedPair:
    """The replies each engine will give, per prompt; the session is built (its engine config
    written with them) at the first use after ``record``."""

    def __init__(self, tmp_path, cli):
        self.tmp_path, self.cli = tmp_path, cli
        self.replies = {"ref": {}, "cand": {}}
        self.errors = {"ref": {}, "cand": {}}
        self.session = self.pair = None

    def built(self):
        if self.session is None:
            tables = "".join(f'[engines.{name}]\nkind = "scripted_engine:ScriptedEngine"\n'
                             f"env = {{ PYTHONPATH = {json.dumps(str(HERE))} }}\n"
                             f'args = {{ whole = true, default = "", replies = {_toml_table(self.replies[name])}, '
                             f"errors = {_toml_table(self.errors[name])} }}\n" for name in ("ref", "cand"))
            (self.tmp_path / "engines.toml").write_text(tables, encoding="utf-8")
            cfg = build_config({"engine_pair": "ref,cand", "engine_config": str(self.tmp_path / "engines.toml"),
                                "noise_floor": "false", **self.cli}, {}, {}, str(self.tmp_path))
            self.session = ParitySession(cfg)
            self.pair = EnginePair(self.session, make_recorder(self.session, "benchmark-parity", "test_quality::node"))
        return self


_PAIRS: list = []


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    while _PAIRS:
        sp = _PAIRS.pop()
        if sp.session is not None:
            sp.session.close()


class _Lazy:
    """Stands for the session or the pair until the replies are recorded."""

    def __init__(self, sp: ScriptedPair, what: str):
        self._sp, self._what = sp, what

    def __getattr__(self, attr):
        return getattr(getattr(self._sp.built(), self._what), attr)


def make_pair(tmp_path, **cli):
    sp = ScriptedPair(tmp_path, cli)
    _PAIRS.append(sp)
    return _Lazy(sp, "session"), _Lazy(sp, "pair")


def record(session, items, ref_texts, cand_texts):
    from scripted_engine import ScriptedEngine

    sp = session._sp
    assert sp.session is None, "record() before the first request: the engines start with their replies"
    for it, r, c in zip(items, ref_texts, cand_texts):
        key = ScriptedEngine.prompt_of(it.request)
        for name, x in (("ref", r), ("cand", c)):
            if isinstance(x, Completion) and x.error:
                sp.errors[name][key] = x.error
            else:
                sp.replies[name][key] = x.text if isinstance(x, Completion) else x


def sum_tasks(tmp_path, n, name="sums"):
    """A task file of n items "what is i + 1?", scored on the number."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": f"{name}-{i:03d}", "prompt": f"Q: what is {i} + 1?\nA:",
                                        "max_tokens": 4, "score": {"number": i + 1}}) + "\n" for i in range(n)))
    return path


def replies(items, correct):
    return [str(i + 1) if ok else "I do not know" for i, ok in enumerate(correct)]


def outcomes_10pt_drop():
    """300 items: reference right on 240 (80 %); the candidate loses 40 of those and gains 10
    of the reference's misses -> 210 (70 %), b = 40, c = 10."""
    ref = [i % 10 < 8 for i in range(300)]
    cand = list(ref)
    lost = [i for i in range(300) if i % 10 == 0] + [i for i in range(100) if i % 10 == 1]
    gained = [i for i in range(100) if i % 10 == 8]
    for i in lost:
        cand[i] = False
    for i in gained:
        cand[i] = True
    return ref, cand, lost, gained


# --------------------------------------------------------------------------------------------
# the paired verdict on recorded outcomes


def test_ten_point_drop_on_300_items_is_worse_and_lists_the_lost_items(tmp_path):
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 300))
    ref, cand, lost, gained = outcomes_10pt_drop()
    record(s, ts.items, replies(ts.items, ref), replies(ts.items, cand))
    with pytest.raises(ParityMismatch) as exc:
        pair.assert_quality_parity(ts)
    msg = str(exc.value)
    assert "quality parity failed" in msg and "sums worse" in msg
    assert "80.0%" in msg and "70.0%" in msg and "40 lost, 10 gained" in msg
    # the discordant items, losses first, with prompt, expectation and both replies
    shown = [line.split()[:2] for line in msg.splitlines() if line.startswith(("  LOST", "  gained"))]
    assert shown == [["LOST", f"sums-{i:03d}:"] for i in sorted(lost)[:10]]
    assert "... and 40 more discordant items" in msg
    assert "expected number 1 (last)" in msg and "'1'" in msg and "'I do not know'" in msg
    [check] = s.checks
    assert (check.name, check.verdict, check.step) == ("quality:sums", "fail", "benchmark-parity")
    n = check.numbers
    assert (n["n"], n["b"], n["c"], n["ref_correct"], n["cand_correct"]) == (300, 40, 10, 240, 210)
    assert n["verdict"] == "worse" and n["drop_low"] > 0.01 and n["p_worse"] < 0.05
    assert n["lost"] == [f"sums-{i:03d}" for i in sorted(lost)]
    assert n["gained"] == [f"sums-{i:03d}" for i in gained]
    sec = s.sections["quality"]["tasks"][0]
    assert [o["lost"] for o in sec["discordant"]] == [True] * 40 + [False] * 10
    # each engine started once and answered the 300 items as one batch
    assert s.reference.starts == s.candidate.starts == 1
    assert [b["requests"] for b in s.reference.batches] == [300] == [b["requests"] for b in s.candidate.batches]


def test_identical_outcomes_on_300_items_are_equivalent(tmp_path):
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 300))
    ref, _, _, _ = outcomes_10pt_drop()
    record(s, ts.items, replies(ts.items, ref), replies(ts.items, ref))
    [res] = pair.assert_quality_parity(ts)
    assert res.verdict == "equivalent" and res.check_verdict == "pass"
    assert (res.stats.b, res.stats.c, res.stats.mcnemar_p) == (0, 0, 1.0)
    assert res.stats.drop_high < 0.01 and res.stats.power_if_equal == 1.0
    [check] = s.checks
    assert check.verdict == "pass" and check.name == "quality:sums"


def test_equivalent_with_discordant_items_both_ways(tmp_path):
    """Engines that fork on near ties lose some items and gain others: 1000 items, 6 lost, 6
    gained -> the drop's upper bound is under one point."""
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 1000))
    ref = [i % 4 != 0 for i in range(1000)]
    cand = list(ref)
    for i in (1, 2, 3, 5, 6, 7):
        cand[i] = False
    for i in (0, 4, 8, 12, 16, 20):
        cand[i] = True
    record(s, ts.items, replies(ts.items, ref), replies(ts.items, cand))
    [res] = pair.assert_quality_parity(ts)
    assert res.verdict == "equivalent" and (res.stats.b, res.stats.c) == (6, 6)
    assert [o.id for o in res.discordant[:6]] == [f"sums-{i:03d}" for i in (1, 2, 3, 5, 6, 7)]


def test_twenty_items_are_inconclusive_and_do_not_fail_unless_strict(tmp_path):
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 20))
    ok = [i % 2 == 0 for i in range(20)]
    record(s, ts.items, replies(ts.items, ok), replies(ts.items, ok))
    [res] = pair.assert_quality_parity(ts)
    assert res.verdict == "inconclusive" and res.check_verdict == "inconclusive"
    assert res.stats.items_needed > 20 and f"need about {res.stats.items_needed} items" in res.stats.message
    assert res.stats.power_if_equal == 0.0  # 20 items cannot show a 1-point margin
    [check] = s.checks
    assert check.verdict == "inconclusive" and "need about" in check.detail and "power 0%" in check.detail
    with pytest.raises(ParityMismatch, match=r"quality parity failed \(inconclusive.*sums inconclusive"):
        pair.assert_quality_parity(ts, strict=True)
    assert [c.verdict for c in s.checks] == ["inconclusive", "inconclusive"]
    assert s.sections["quality"]["strict"] is True and len(s.sections["quality"]["tasks"]) == 1


def test_p_values_and_intervals_match_scipy_exact_tests(tmp_path):
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 300))
    ref, cand, _, _ = outcomes_10pt_drop()
    record(s, ts.items, replies(ts.items, ref), replies(ts.items, cand))
    [res] = pair.quality_results(ts)
    v = res.stats
    b = sum(r and not c for r, c in zip(ref, cand))
    c_ = sum(c and not r for r, c in zip(ref, cand))
    assert (v.b, v.c) == (b, c_) == (40, 10)
    # McNemar's exact test is the two-sided binomial test on the discordant pairs
    assert v.mcnemar_p == pytest.approx(st.binomtest(b, b + c_, 0.5).pvalue, rel=1e-12)
    # ... and from its definition: the outcomes at most as likely as the observed one
    pmf = [math.comb(b + c_, k) / 2 ** (b + c_) for k in range(b + c_ + 1)]
    assert v.mcnemar_p == pytest.approx(sum(p for p in pmf if p <= pmf[b] * (1 + 1e-7)), rel=1e-9)
    # each engine's accuracy interval is scipy's exact (Clopper-Pearson) interval
    for k, ci in ((240, v.ref_ci), (210, v.cand_ci)):
        exact = st.binomtest(k, 300).proportion_ci(confidence_level=0.95, method="exact")
        assert ci == pytest.approx((exact.low, exact.high), rel=1e-9)
    assert not s.checks  # quality_results records nothing


def test_max_drop_and_confidence_come_from_the_options(tmp_path):
    """The same recorded 10-point drop with a 15-point allowance is no longer "worse"."""
    s, pair = make_pair(tmp_path, max_quality_drop=15.0, confidence=0.9)
    [ts] = load_tasks(sum_tasks(tmp_path, 300))
    ref, cand, _, _ = outcomes_10pt_drop()
    record(s, ts.items, replies(ts.items, ref), replies(ts.items, cand))
    [res] = pair.assert_quality_parity(ts)
    # "worse" is decided at the run's alpha share; "equivalent" at the confidence option
    assert res.stats.max_drop == 0.15 and res.stats.alpha == pytest.approx(pair.context.cfg.alpha_per_decision)
    assert res.stats.ref_ci == pytest.approx(proportion_interval(res.stats.ref_correct, res.stats.n, 0.9))
    assert res.verdict != "worse"
    assert s.sections["quality"]["max_drop_points"] == 15.0
    with pytest.raises(ParityMismatch):
        pair.assert_quality_parity(ts, max_drop=1)  # per-call narrowing


def test_engine_errors_count_as_wrong_and_are_listed(tmp_path):
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 4))
    err = Completion.failed("prompt too long", "ValueError")
    record(s, ts.items, ["1", "2", "3", "4"], ["1", err, "3", "4"])
    [res] = pair.quality_results(ts)
    [o] = res.lost
    assert o.id == "sums-001" and o.cand_error == "prompt too long" and not o.cand_correct
    assert "ERROR prompt too long" in res.explain()
    assert res.numbers()["cand_errors"] == 1


def test_real_smollm2_replies_on_the_builtin_capitals_task(tmp_path):
    """Replies recorded from the embedded model (hf, fp32) and from the same model with 15 %
    weight noise (perturb_weights=0.15, seed 1) on suites/tasks/capitals_facts.jsonl."""
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(TASKS / "capitals_facts.jsonl")
    ts.items[:] = ts.items[:30]  # the replies were recorded on the first 30 items
    ref = [RECORDED_REF[it.id] for it in ts.items]
    cand = [RECORDED_DEGRADED[i % len(RECORDED_DEGRADED)] for i in range(len(ts.items))]
    record(s, ts.items, ref, cand)
    with pytest.raises(ParityMismatch) as exc:
        pair.assert_quality_parity(ts)
    [res] = s.sections["quality"]["tasks"]
    wrong = {"facts-18", "facts-19", "facts-20", "facts-26", "facts-29", "facts-30"}
    assert res["ref_correct"] == 30 - len(wrong) and res["cand_correct"] == 0
    assert res["verdict"] == "worse" and sorted(res["lost"]) == sorted(it.id for it in ts.items if it.id not in wrong)
    assert "LOST   facts-01" in str(exc.value) and "The capital of France is Paris." in str(exc.value)


# --------------------------------------------------------------------------------------------
# several tasks, --parity-tasks, reports


def test_one_check_per_task_plus_pooled_and_one_registration(tmp_path):
    s, pair = make_pair(tmp_path)
    sets = resolve_task_sources([sum_tasks(tmp_path, 30, "a"), sum_tasks(tmp_path, 30, "b")])
    ok = [i % 3 != 0 for i in range(30)]
    for ts in sets:
        record(s, ts.items, replies(ts.items, ok), replies(ts.items, ok))
    res = pair.assert_quality_parity(sets)
    assert [r.task for r in res] == ["a", "b", "all"]
    assert [c.name for c in s.checks] == ["quality:a", "quality:b", "quality:all"]
    assert res[-1].stats.n == 60 and all(c.verdict == "inconclusive" for c in s.checks)
    # the items became session requests (so the report lists them, and a pending one is batched)
    assert s.declared == 30  # tasks a and b ask the same 30 questions: one request each
    assert ("quality_a", "inconclusive") in pair._props


def test_parity_tasks_option_replaces_the_named_task_sets(tmp_path):
    mine = sum_tasks(tmp_path, 5, "mine")
    s, pair = make_pair(tmp_path, tasks="mine.jsonl")  # relative to the rootdir
    [ts] = load_tasks(mine)
    record(s, ts.items, ["1", "2", "3", "4", "5"], ["1", "2", "3", "4", "5"])
    [res] = pair.quality_results(TASKS / "arithmetic.jsonl")
    assert res.task == "mine" and res.stats.n == 5


def test_report_section_and_html(tmp_path):
    s, pair = make_pair(tmp_path)
    [ts] = load_tasks(sum_tasks(tmp_path, 300))
    ref, cand, _, _ = outcomes_10pt_drop()
    record(s, ts.items, replies(ts.items, ref), replies(ts.items, cand))
    with pytest.raises(ParityMismatch):
        pair.assert_quality_parity(ts)
    doc = {"verdict": "fail", "reason": "", "steps": [], "quality": s.sections["quality"]}
    json.dumps(doc)  # JSON-serialisable as is
    page = html_section(doc)
    assert "Quality on labelled tasks" in page and "<svg" in page
    for acc, k in (("80.0%", 240), ("70.0%", 210)):  # accuracy [exact 95 % CI]
        ci = st.binomtest(k, 300).proportion_ci(method="exact")
        assert f"{acc} [{ci.low:.1%}, {ci.high:.1%}]" in page
    assert page.index(">lost<") < page.index(">gained<")
    assert "<th>ref accuracy" in page and "<th>cand accuracy" in page and "McNemar exact p" in page and "power" in page
    write_html(tmp_path / "r.html", doc)
    full = (tmp_path / "r.html").read_text()
    assert "Quality on labelled tasks" in full and "sums-000" in full
    assert html_section({"quality": None}) == ""


# --------------------------------------------------------------------------------------------
# scorers


def scorer(spec, tmp_path=None):
    return parse_scorer(spec, "test", Path(tmp_path) if tmp_path else None)


@pytest.mark.parametrize("reply, ok", [
    ("Paris", True), ("  paris.  ", True), ("**Paris**", True), ('"Paris"', True), ("Paris!\n", True),
    ("The capital of France is Paris.", False), ("Pariss", False), ("", False),
])
def test_exact(reply, ok):
    assert scorer({"exact": "Paris"})(reply) is ok


def test_exact_list_case_sensitive_and_whitespace():
    assert scorer({"exact": ["small", "little"]})("Little")
    cs = scorer({"exact": "APPLE", "case_sensitive": True})
    assert cs("APPLE.") and not cs("apple") and not cs("Apple")
    assert scorer({"exact": "blue sky"})("blue   sky")


def test_regex():
    r = scorer({"regex": r"\bParis\b", "flags": "i"})
    assert r("The capital of France is paris.") and not r("Parisian food")
    full = scorer({"regex": r"\d+ cm", "fullmatch": True})
    assert full(" 200 cm\n") and not full("it is 200 cm")
    assert not scorer({"regex": "Paris"})("paris")


@pytest.mark.parametrize("spec, reply, ok", [
    ({"number": 7}, "3 + 4 = 7", True),  # real SmolLM2 reply: the question restated, answer last
    ({"number": 7, "pick": "first"}, "3 + 4 = 7", False),
    ({"number": 3, "pick": "first"}, "3 + 4 = 7", True),
    ({"number": 42}, "25 + 17 = 32", False),
    ({"number": 1000}, "1 liter is equal to 1000 milliliters.", True),
    ({"number": 1000}, "That is 1,000.", True),
    ({"number": -5}, "The result is -5.", True),
    ({"number": 2.54, "tolerance": 0.01}, "1 inch is equal to 2.54 cm.", True),
    ({"number": 2.54, "tolerance": 0.01}, "about 2.5", False),
    ({"number": 1.609, "rel_tolerance": 0.01}, "1.6", True),
    ({"number": 0.5}, "0.50 liters", True),
    ({"number": 2}, "It is H2O", False),  # digits inside a word are not a number
    ({"number": 12}, "twelve", False),
])
def test_number(spec, reply, ok):
    assert scorer(spec)(reply) is ok


def test_number_helpers():
    assert numbers_in("3 + 4 = 7, not 1,000 or 2.5; CO2, pages 2-3, or -8") == [3, 4, 7, 1000, 2.5, 2, 3, -8]


@pytest.mark.parametrize("reply, letter", [
    ("B) Tuesday", "B"), ("A) an umbrella", "A"), ("B", "B"), ("(C)", "C"), ("**B**", "B"), ("C.", "C"),
    ("The answer is B.", "B"), ("Answer: (A)", "A"), ("I think (B) is right", "B"),
    ("A week has 7 days.\n", None),  # real reply: the article "A" is not a choice
    ("A dog", None), ("D) none", None), ("", None),
])
def test_choice_letter(reply, letter):
    assert choice_letter(reply, "ABC") == letter


def test_choice_scorer():
    sc = scorer({"choice": "C", "letters": "ABC"})
    assert sc("C) they weigh the same") and not sc("A) the feathers\n\nThe correct")


def test_builtin_python_scorers():
    assert json_object('{\n  "name": "Ana"\n}', values={"name": "Ana"})
    assert json_object('```json\n{"color": "red"}\n```', values={"color": "red"})
    assert not json_object('{\n  "name": "Red",\n  "description": "The color of', values={"color": "red"})
    assert json_object('{"a": 1, "b": 2}', keys=["a", "b"]) and not json_object("[1]", keys=[])
    assert comma_list("red, green, blue", 3) and comma_list("Red, green and blue.".replace(" and", ", and"), 3)
    assert not comma_list("The three colors are: blue, green, and red.", 3)
    assert not comma_list("1. apple\n2. pear", 2)
    assert word_count("Vast blue sea.", 3) and not word_count("A cat is a cat.", 1)
    assert word_count("Fluffy", 1) and word_count("sun-kissed warmth", 2)
    assert all_caps("HELLO!") and not all_caps("Hello") and not all_caps("123")


def test_python_scorer_by_name_from_a_package_module():
    sc = scorer({"scorer": "pytest_engineparity.checks.quality:word_count", "args": {"count": 2}})
    assert sc("blue sky") and not sc("blue")
    assert "scorer pytest_engineparity.checks.quality:word_count(count=2)" == sc.describe()


def test_python_scorer_beside_the_task_file(tmp_path):
    (tmp_path / "my_scorers.py").write_text("def starts(reply, prefix):\n    return reply.startswith(prefix)\n"
                                            "def broken(reply):\n    return reply['x']\n"
                                            "def maybe(reply):\n    return 'yes'\n")
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"prompt": "Say hi", "score": {"scorer": "my_scorers:starts", "args": {"prefix": "Hi"}}}) + "\n"
        + json.dumps({"prompt": "Say ho", "score": {"scorer": "my_scorers:broken"}}) + "\n"
        + json.dumps({"prompt": "Say he", "score": {"scorer": "my_scorers:maybe"}}) + "\n")
    [ts] = load_tasks(tmp_path / "t.jsonl")
    good, broken, maybe = ts.items
    assert good.scorer("Hi there") and not good.scorer("Hello")
    with pytest.raises(TaskScoreError, match=r"my_scorers:broken' raised TypeError.*on reply 'ho'"):
        broken.scorer("ho")
    with pytest.raises(TaskScoreError, match=r"returned 'yes' \(str\), not a bool"):
        maybe.scorer("x")


# --------------------------------------------------------------------------------------------
# task files


def test_builtin_task_files_load():
    sets = load_tasks(TASKS)
    names = [ts.name for ts in sets]
    assert names == ["arithmetic", "capitals_facts", "format_following", "short_reasoning", "unit_conversion"]
    kinds = {it.scorer.kind for ts in sets for it in ts.items}
    assert kinds == {"exact", "regex", "number", "choice", "scorer"}
    # sized for the default margin: 300 items pooled (an identical pair comes out equivalent)
    assert sum(len(ts) for ts in sets) == 300
    for ts in sets:
        assert len(ts) == 60
        assert all(it.request.max_tokens <= 24 and it.request.greedy for it in ts.items)


def test_defaults_task_field_and_ids(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text("// comment\n\n"
                 + json.dumps({"prompt": "1+1=", "score": {"number": 2}}) + "\n"
                 + json.dumps({"task": "other", "messages": [{"role": "user", "content": "hi"}],
                               "id": "x1", "max_tokens": 3, "score": {"exact": "hi"}}) + "\n")
    a, b = load_tasks(p, default_max_tokens=9)
    assert (a.name, a.items[0].id, a.items[0].request.max_tokens, a.items[0].request.id) == ("mixed", "mixed:3", 9, "mixed:3")
    assert (b.name, b.items[0].id, b.items[0].request.max_tokens) == ("other", "x1", 3)
    assert a.items[0].where.endswith("mixed.jsonl:3")


GOOD = {"prompt": "2+2=", "score": {"number": 4}}


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps({"prompt": "x"}), "needs a 'score' object"),
    (json.dumps({"prompt": "x", "expected": "y"}), "needs a 'score' object"),
    (json.dumps({"prompt": "x", "score": "Paris"}), "'score' must be an object"),
    (json.dumps({"prompt": "x", "score": {}}), "needs exactly one of exact, regex, number, choice, scorer"),
    (json.dumps({"prompt": "x", "score": {"exact": "a", "regex": "b"}}), "needs exactly one of"),
    (json.dumps({"prompt": "x", "score": {"exact": "a", "tolerance": 1}}), "unknown key(s) ['tolerance'] for a 'exact'"),
    (json.dumps({"prompt": "x", "score": {"exact": ""}}), "'exact' must be a non-empty string"),
    (json.dumps({"prompt": "x", "score": {"exact": "a", "case_sensitive": "yes"}}), "'case_sensitive' must be true or false"),
    (json.dumps({"prompt": "x", "score": {"regex": "(unclosed"}}), "bad regex '(unclosed'"),
    (json.dumps({"prompt": "x", "score": {"regex": "a", "flags": "q"}}), "flags' must be letters from 'imsx'"),
    (json.dumps({"prompt": "x", "score": {"number": "four"}}), "'number' must be a finite number"),
    (json.dumps({"prompt": "x", "score": {"number": 4, "tolerance": -1}}), "'tolerance' must be a non-negative"),
    (json.dumps({"prompt": "x", "score": {"number": 4, "pick": "middle"}}), "'pick' must be 'first' or 'last'"),
    (json.dumps({"prompt": "x", "score": {"choice": "E"}}), "'choice' must be one of the letters 'ABCD'"),
    (json.dumps({"prompt": "x", "score": {"choice": "A", "letters": "AA"}}), "'letters' must be 2 or more distinct"),
    (json.dumps({"prompt": "x", "score": {"scorer": "nocolon"}}), "scorer must be 'module:function'"),
    (json.dumps({"prompt": "x", "score": {"scorer": "no_such_module_xyz:f"}}), "cannot import 'no_such_module_xyz'"),
    (json.dumps({"prompt": "x", "score": {"scorer": "pytest_engineparity.checks.quality:nope"}}), "has no function 'nope'"),
    (json.dumps({"prompt": "x", "score": {"scorer": "pytest_engineparity.checks.quality:word_count"}}),
     "cannot be called as f(reply, **{})"),
    (json.dumps({"prompt": "x", "score": {"scorer": "pytest_engineparity.checks.quality:all_caps", "args": [1]}}),
     "'args' must be an object"),
    (json.dumps({"prompt": "x", "task": "bad name!", "score": {"number": 1}}), "'task' must be a name"),
    (json.dumps({"prompt": "x", "task": "all", "score": {"number": 1}}), "reserved"),
    (json.dumps({"score": {"number": 1}}), "needs 'prompt' or 'messages'"),
    (json.dumps({"prompt": "x", "max_tokens": 0, "score": {"number": 1}}), "max_tokens must be an integer >= 1"),
    (json.dumps({"prompt": "x", "answer": "y", "score": {"number": 1}}), "unsupported field(s) ['answer']"),
    (json.dumps({"prompt": "x", "score": {"scorer": "broken_scorers:f"}}), "importing 'broken_scorers' failed: ZeroDivisionError"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    (tmp_path / "broken_scorers.py").write_text("1 / 0\n")
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(GOOD) + "\n\n" + line + "\n")
    with pytest.raises(TaskFileError) as exc:
        load_tasks(p)
    assert str(exc.value).startswith(f"{p}:3: ") and message in str(exc.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(TaskFileError, match="does not exist"):
        load_tasks(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("// nothing\n")
    with pytest.raises(TaskFileError, match="no task items"):
        load_tasks(tmp_path / "empty.jsonl")
    (tmp_path / "dup.jsonl").write_text(json.dumps({**GOOD, "id": "a"}) + "\n"
                                        + json.dumps({**GOOD, "prompt": "3+1=", "id": "a"}) + "\n")
    with pytest.raises(TaskFileError, match=r"dup.jsonl:2: duplicate id 'a' in task 'dup' \(first at line 1\)"):
        load_tasks(tmp_path / "dup.jsonl")
    (tmp_path / "rep.jsonl").write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(TaskFileError, match=r"rep.jsonl:2: the same request as line 1"):
        load_tasks(tmp_path / "rep.jsonl")
    (tmp_path / "bad.jsonl").write_bytes(b"\xff\xfe\n")
    with pytest.raises(TaskFileError, match="not UTF-8"):
        load_tasks(tmp_path / "bad.jsonl")
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(TaskFileError, match="has no \\*.jsonl files"):
        load_tasks(d)
    (d / "x.jsonl").write_text(json.dumps({**GOOD, "task": "t"}) + "\n")
    (d / "y.jsonl").write_text(json.dumps({**GOOD, "task": "t"}) + "\n")
    with pytest.raises(TaskFileError, match="task 't' comes from two places"):
        load_tasks(d)


def test_no_tasks_and_bad_settings(tmp_path):
    s, pair = make_pair(tmp_path)
    with pytest.raises(TaskFileError, match="no tasks: pass a task file"):
        pair.quality_results()
    with pytest.raises(ValueError, match="percentage points"):
        pair.quality_results(TASKS, max_drop=100)


# replies recorded from SmolLM2-135M-Instruct (hf, fp32, greedy, max_tokens 16) on
# suites/tasks/capitals_facts.jsonl, and some of the degraded model's (perturb_weights=0.15)
RECORDED_REF = {
    "facts-01": "The capital of France is Paris.", "facts-02": "The capital of Japan is Tokyo.",
    "facts-03": "The capital of Italy is Rome.", "facts-04": "Germany's capital is Berlin.",
    "facts-05": "The capital of Spain is Madrid.", "facts-06": "The capital of Canada is Ottawa.",
    "facts-07": "The capital of Australia is Canberra.", "facts-08": "The capital of Egypt is Cairo.",
    "facts-09": "The capital of Russia is Moscow.", "facts-10": "The capital of China is Beijing.",
    "facts-11": "The capital of the United Kingdom is London.", "facts-12": "Portugal's capital is Lisbon.",
    "facts-13": "The capital of Greece is Athens.", "facts-14": "Kenya's capital is Nairobi.",
    "facts-15": "Brazil's capital is Brasilia.", "facts-16": "The capital of Norway is Oslo.",
    "facts-17": "Poland's capital is Warsaw.", "facts-18": "The capital of Turkey is Istanbul.",
    "facts-19": "The largest planet in our solar system is Neptune, but it's actually Uranus,",
    "facts-20": "The Red Planet is the outermost planet in the habitable zone of the Sun, designated",
    "facts-21": "A: William Shakespeare", "facts-22": "Gold is represented by the symbol Au.",
    "facts-23": "Plants absorb carbon dioxide (CO2) and convert it into glucose (C6",
    "facts-24": "A week is approximately 7 days.", "facts-25": "A spider has 8 legs.",
    "facts-26": "The boiling point of water at sea level in degrees Celsius is approximately 10",
    "facts-27": "The largest ocean is the Pacific Ocean, which is approximately 149.",
    "facts-28": "The tallest mountain in the world is Mount Everest, with a height of 8",
    "facts-29": "The king of the jungle is the jaguar, a majestic and elusive creature with",
    "facts-30": "Egypt is a landlocked country in the Middle East, located between the Sinai Peninsula",
}
RECORDED_DEGRADED = [
    'Shelaghbol"en"\n\nShelaghbol"\n\n', "I'll give you a\nI'll give you\n\nWhy is Japan?",
    "In Italy, where in Italy?\n\nwhere in Italy?\n\nwhere", "Egypt\nEgypt\nEgypt\n\nWhy you need\nWhy you need\nWhy",
    "Russia, where?\n\nRussia\n\nRussia\n\nRussia\n\nRussia", "Ish\n\nIsh\n\nIsh\n\nIsh\n\n",
    "the capital of Canada\n\nthe Canadian\n\nthe Canadian\n\nthe Canadian", "1000000000000000",
]


def test_malformed_parity_tasks_file_fails_naming_the_line_before_any_engine_starts(pytester):
    pytester.makefile(".jsonl", mytasks=json.dumps(GOOD) + "\n" + json.dumps({"prompt": "x", "score": {"regex": "("}}))
    pytester.makepyfile(test_q="""
        import pytest
        pytestmark = pytest.mark.migration_step("benchmark-parity")

        def test_quality(engine_pair):
            engine_pair.assert_quality_parity("ignored-when-parity-tasks-is-given.jsonl")
    """)
    result = pytester.runpytest_subprocess("--engine-pair=hf,hf", "--parity-tasks=mytasks.jsonl", "-p", "no:cacheprovider")
    # a usage error at start-up (exit 4), one line naming file and line; no engine starts
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "--parity-tasks: " in errors[0] and "mytasks.jsonl:2: bad regex '('" in errors[0]
    assert "starting reference engine" not in result.stdout.str()
