"""Check families, one module each, and the one registry of them.

Where a new check goes: a module here with a class taking one ``CheckContext`` (``context.py``),
``name`` (its attribute on ``engine_pair``), ``section`` (its report key, or None) and
``render_html(doc)``, optionally ``preflight()`` (run once both engines are up, before the first
test; returns the lines shown at the top of the run), ``terminal_lines(doc)`` (its lines in the
summary at the end) and ``validate_options(cfg, rootdir)`` (its options checked at start: raise
``ConfigError``, a usage error); one line in ``FAMILIES``; a suite file in
``suites/``. The fixture exposes
``engine_pair.<name>`` and delegates ``engine_pair.<public method>`` to it; the report renders its
section. Shared tools: ``compare`` (per-prompt layers), ``stats``, ``semantic``, ``verdicts``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FAMILIES", "HOOKS", "family_class"]

# name -> "module:Class" (imported on first use: nothing heavy at plugin load)
FAMILIES: dict[str, str] = {
    "equivalence": "pytest_engineparity.checks.equivalence:EquivalenceChecks",
    "truncation": "pytest_engineparity.checks.truncation:TruncationChecks",
    "latency": "pytest_engineparity.checks.latency:LatencyChecks",
    "quality": "pytest_engineparity.checks.quality:QualityChecks",
    "baseline": "pytest_engineparity.checks.baseline:BaselineChecks",
    "rendering": "pytest_engineparity.checks.rendering:RenderingChecks",
    "load": "pytest_engineparity.checks.load:LoadChecks",
}


# what every family has (or may have) for the plugin; not delegated as ``engine_pair.<method>``
HOOKS = ("name", "section", "render_html", "preflight", "terminal_lines", "validate_options")


def family_class(name: str) -> Any:
    mod, _, cls = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(mod), cls)
