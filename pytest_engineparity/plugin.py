"""pytest wiring only: options, markers, fixtures and hooks. The work lives in plain modules.

Loading this plugin imports no engine, torch or sentence-transformers: ``pytest --help`` stays
fast on a machine without them.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional

import pytest

from .config import MIGRATION_STEPS, OPTIONS, ConfigError, ParityConfig, build_config, read_pyproject_table
from .types import GenerationRequest

_CFG = pytest.StashKey[ParityConfig]()
_SESSION = pytest.StashKey[Any]()
_CHECKS = pytest.StashKey[list]()
_ITEM_STEP = pytest.StashKey[Optional[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engineparity", "engine parity (pytest-engineparity)")
    for opt in OPTIONS:
        default = f" (ini: {opt.ini})"
        if opt.flag_only:
            group.addoption(opt.flag, dest="engineparity_" + opt.dest, action="store_const", const=True,
                            default=None, help=opt.help + default)
        else:
            group.addoption(opt.flag, dest="engineparity_" + opt.dest, metavar=opt.metavar, default=None,
                            help=opt.help + default)
        parser.addini(opt.ini, help=opt.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "migration_step(step): the migration step this test gives a verdict "
                            f"for; one of {', '.join(MIGRATION_STEPS)}")
    config.addinivalue_line("markers", "parity_prompts(*paths_or_requests): prompts for the parity_request "
                            "parameter (JSONL paths relative to the test file, or GenerationRequest objects)")
    cli = {o.dest: config.getoption("engineparity_" + o.dest) for o in OPTIONS}
    ini = {o.dest: config.getini(o.ini) for o in OPTIONS}
    try:
        table = read_pyproject_table(config.rootpath)
        cfg = build_config(cli, ini, table, str(config.rootpath))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_CFG] = cfg
    config.stash[_CHECKS] = []
    if not cfg.active:
        return
    # xdist policy: engines on one GPU do not share well, and each worker would start its own
    # pair. The engines batch internally, so run the parity suite in one process.
    if hasattr(config, "workerinput") or (config.getoption("numprocesses", None) not in (None, 0, "0")
                                          and config.getoption("dist", "no") != "no"):
        raise pytest.UsageError(
            "--engine-pair cannot run under pytest-xdist (-n/--dist): every xdist worker would start "
            "its own pair of engines. Run the parity suite without -n; engines batch the suite internally."
        )
    from .prompts import PromptFileError, load_prompts, sample_requests

    if cfg.prompts:
        try:
            path = cfg.prompts if os.path.isabs(cfg.prompts) or os.path.exists(cfg.prompts) else \
                os.path.join(str(config.rootpath), cfg.prompts)
            reqs = load_prompts(path, cfg.max_tokens)
            config.stash[_USER_PROMPTS] = sample_requests(reqs, cfg.sample, cfg.seed, where=cfg.prompts)
        except PromptFileError as exc:
            raise pytest.UsageError(f"--parity-prompts: {exc}") from None
    from .checks import FAMILIES, family_class

    for name in FAMILIES:  # each check family checks its own options before any engine starts
        validate = getattr(family_class(name), "validate_options", None)
        if validate is not None:
            try:
                validate(cfg, str(config.rootpath))
            except ConfigError as exc:
                raise pytest.UsageError(str(exc)) from None
    from .session import ParitySession

    tr = config.pluginmanager.get_plugin("terminalreporter")

    def notify(msg: str) -> None:
        if tr is not None:
            tr.write_line(f"[engineparity] {msg}")

    config.stash[_SESSION] = ParitySession(cfg, notify=notify)


_USER_PROMPTS = pytest.StashKey[list]()


def _prompts_for(config: pytest.Config, node: Any) -> list[GenerationRequest]:
    """The requests ``parity_request`` takes for one test: --parity-prompts (sampled) when given,
    else the test's ``parity_prompts`` marker (JSONL paths relative to the test file)."""
    from .prompts import PromptFileError, load_prompts

    cfg = config.stash[_CFG]
    if cfg.prompts and _USER_PROMPTS in config.stash:
        return list(config.stash[_USER_PROMPTS])
    out: list[GenerationRequest] = []
    cache = config.stash.setdefault(_FILE_CACHE, {})
    for mark in node.iter_markers("parity_prompts"):
        for item in mark.args:
            if isinstance(item, GenerationRequest):
                out.append(item)
                continue
            path = item if os.path.isabs(str(item)) else os.path.join(os.path.dirname(str(node.fspath)), str(item))
            if path not in cache:
                try:
                    cache[path] = load_prompts(path, cfg.max_tokens)
                except PromptFileError as exc:
                    raise pytest.UsageError(f"{node.nodeid}: parity_prompts: {exc}") from None
            out.extend(cache[path])
    return out


_FILE_CACHE = pytest.StashKey[dict]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "parity_request" not in metafunc.fixturenames:
        return
    reqs = _prompts_for(metafunc.config, metafunc.definition)
    metafunc.parametrize("parity_request", reqs, ids=[r.label() for r in reqs])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    for item in items:
        marks = list(item.iter_markers("migration_step"))
        step = None
        if marks:
            args = marks[0].args
            step = args[0] if args else None
            if step not in MIGRATION_STEPS:
                raise pytest.UsageError(f"{item.nodeid}: unknown migration_step {step!r}; "
                                        f"use one of {', '.join(MIGRATION_STEPS)}")
        item.stash[_ITEM_STEP] = step
    psession = config.stash.get(_SESSION, None)
    if psession is None:
        return
    if psession.cfg.single_engine:
        # one engine against its baseline: checks that compare two engines have nothing to compare
        skip = pytest.mark.skip(reason="one engine (--parity-baseline post-update check): "
                                "cross-engine checks need --engine-pair=REF,CAND")
        for item in items:
            if item.stash.get(_ITEM_STEP, None) in ("benchmark-parity", "canary"):
                item.add_marker(skip)
    declared = []
    for item in items:
        if "parity_requests" in getattr(item, "fixturenames", ()):
            declared.extend(_prompts_for(config, item))
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        declared.extend(v for v in callspec.params.values() if isinstance(v, GenerationRequest))
    psession.register(declared)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and report.failed:
        from .errors import EngineError, EngineUnavailable

        if excinfo.errisinstance(EngineUnavailable):
            report.longrepr = f"{excinfo.typename}: {excinfo.value}"  # one line: the full report is above
        if excinfo.errisinstance((EngineError, EngineUnavailable)):
            # nothing more can be compared: stop (as a failed run, exit 1), rather than fail every later
            # test one by one
            item.session.shouldfail = f"engine unavailable: {str(excinfo.value).splitlines()[0]}"
    step = item.stash.get(_ITEM_STEP, None)
    if step is None:
        return report
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            verdict, detail = "pass", ""
        elif report.skipped:
            verdict = "skip"
            lr = report.longrepr
            detail = str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
        else:
            verdict = "fail" if report.when == "call" else "error"
            if call.excinfo is not None:
                from .errors import EngineError, EngineUnavailable

                if call.excinfo.errisinstance((EngineError, EngineUnavailable)):
                    verdict = "error"  # the engine could not answer: nothing was compared
            crash = getattr(report.longrepr, "reprcrash", None)
            detail = crash.message if crash is not None else str(report.longrepr)
            detail = detail.splitlines()[0] if detail else ""
            if call.excinfo is not None and isinstance(call.excinfo.value, AssertionError):
                detail = str(call.excinfo.value).splitlines()[0] if str(call.excinfo.value) else detail
        from .checks.verdicts import Check

        item.config.stash[_CHECKS].append(Check(step, item.nodeid, verdict, detail[:500], {}, item.nodeid))
    return report


_ENGINE_FIXTURES = {"engine_pair", "parity_results", "reference_engine", "candidate_engine"}


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Pre-flight: with --engine-pair, start both engines before the first test that needs them,
    so an engine that cannot start is reported once, in full, at the top; then the check families'
    pre-flights (the rendering one: a handful of chat and completion requests, riding the first
    batch with the suite's prompts), whose findings are shown at the top too."""
    ps = session.config.stash.get(_SESSION, None)
    if ps is None or session.config.option.collectonly:
        return
    # only when the collected tests declared requests: then both engines are surely needed (a run of
    # opt-in checks that all skip, or a staging-compile check of an engine dir, starts nothing)
    # (staging-compile checks an engine dir against this machine and skips without a baseline)
    if not ps.declared or not any(_ENGINE_FIXTURES & set(getattr(i, "fixturenames", ()))
                                  and i.stash.get(_ITEM_STEP, None) != "staging-compile" for i in session.items):
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    for h in ps.handles:
        h.reported_at = None
    errors = ps.start_engines()
    title = "an engine could not start"
    lines: list[str] = []
    if not errors:  # both up: the families' pre-flights (the rendering one) ride the first batch
        from .errors import EngineError
        from .pair import EnginePair, make_recorder

        try:
            lines = EnginePair(ps, make_recorder(ps, None, None)).preflight()
        except EngineError as exc:  # an engine that died on the first batch: shown here, in full
            errors, title = [exc], "an engine failed on its first batch"
        except Exception as exc:  # a check family's own error: shown, and its test meets it again
            lines = [f"the pre-flight could not run: {type(exc).__name__}: {exc}"]
    for h in ps.handles:
        if h.error is not None:
            h.reported_at = "in the engine pre-flight at the top of this run"
    if lines and tr is not None:
        tr.section("engine parity: pre-flight", sep="-")
        for line in lines:
            tr.write_line(line, red=" FAIL: " in line)
    if errors and tr is not None:
        tr.section(f"engine parity: {title}", sep="!", red=True)
        for err in errors:
            tr.write_line(str(err), red=True)
        tr.write_line("What to do next: check the engine's target (model dir, engine dir or URL) and its "
                      "interpreter (`python = ...` in --engine-config); run `engineparity prepare-model` for the "
                      "embedded model; the log tail above is the engine's own output. No parity test can run "
                      "until both engines start.")


def _psession(request: pytest.FixtureRequest) -> Any:
    ps = request.config.stash.get(_SESSION, None)
    if ps is None:
        pytest.skip("no --engine-pair given: parity tests need a reference and a candidate engine")
    return ps


@pytest.fixture
def engine_pair(request: pytest.FixtureRequest) -> Any:
    """The reference and candidate engines: ``run(req)``, ``assert_equivalent(req)``,
    ``assert_suite_equivalent()``, ``with_tolerance(...)``, ``reference``/``candidate`` views."""
    from .pair import EnginePair, make_recorder

    ps = _psession(request)
    node = request.node
    step = node.stash.get(_ITEM_STEP, None)
    node.user_properties.append(("migration_step", step or ""))
    for h in ps.handles:  # where an engine failure is first shown in full, for later one-liners
        h.current_place = lambda nodeid=node.nodeid: f"at {nodeid}"
    return EnginePair(ps, make_recorder(ps, step, node.nodeid), properties=node.user_properties)


@pytest.fixture
def parity_requests(request: pytest.FixtureRequest) -> list:
    """Every request this test's ``parity_request`` would take (--parity-prompts, sampled, or its
    ``parity_prompts`` marker): for suite-level checks over one prompt set, e.g. a canary replay.
    They are part of the suite batch."""
    reqs = _prompts_for(request.config, request.node)
    if not reqs:
        pytest.skip("no prompts: give --parity-prompts or mark the test with parity_prompts(...)")
    return reqs


@pytest.fixture
def reference_engine(engine_pair: Any) -> Any:
    """The reference engine alone (direct, uncached calls)."""
    return engine_pair.reference


@pytest.fixture
def candidate_engine(engine_pair: Any) -> Any:
    """The candidate engine alone (direct, uncached calls)."""
    return engine_pair.candidate


@pytest.fixture
def parity_results(engine_pair: Any) -> list:
    """Every declared request's PairResult (each engine ran them as one batch)."""
    return engine_pair.results()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    ps = config.stash.get(_SESSION, None)
    if ps is None:
        return
    if config.option.collectonly:  # nothing ran: no verdict, no report
        ps.close()
        return
    try:
        try:
            from .report import build_document

            doc = build_document(ps, list(config.stash[_CHECKS]) + list(ps.checks))
        except Exception as exc:  # report the failure itself rather than crash pytest's summary
            doc = None
            tr = config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"[engineparity] could not build the parity report: {exc!r}", red=True)
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        config.stash[_DOC] = doc
        cfg: ParityConfig = config.stash[_CFG]
        if doc is not None:
            from .report import write_html, write_json

            if cfg.report:
                write_json(cfg.report, doc)
            if cfg.html:
                write_html(cfg.html, doc)
            if doc["exit_blocks"] and session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
    finally:
        ps.close()


_DOC = pytest.StashKey[Optional[dict]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    doc = config.stash.get(_DOC, None)
    if doc is None:
        return
    from .report import summary_lines

    terminalreporter.section("engine parity")
    for line, colour in summary_lines(doc):
        terminalreporter.write_line(line, **({colour: True} if colour else {}))
