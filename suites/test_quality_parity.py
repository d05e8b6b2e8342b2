"""Quality parity on labelled tasks (migration step 3: benchmark parity).

Similarity does not say whether the candidate got worse; grading does. Each item of the task sets
in ``tasks/`` (arithmetic, capitals and facts, unit conversion, short reasoning, format following;
short answers, small max_tokens) is scored right/wrong on each engine, all items in one batch per
engine. Per task, and pooled over all tasks, the paired outcomes give "equivalent" (a drop of
--parity-max-quality-drop points or more is ruled out), "worse" (a larger drop is shown: fails)
or "inconclusive" (recorded with the number of items that would settle it; fails only with
strict=True). --parity-tasks=FILE replaces the built-in task sets with yours.
"""

from pathlib import Path

import pytest

pytestmark = pytest.mark.migration_step("benchmark-parity")

TASKS = Path(__file__).parent / "tasks"


def test_quality_parity(engine_pair):
    engine_pair.assert_quality_parity(TASKS)
