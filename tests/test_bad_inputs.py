"""Bad inputs, one table: every bad input we try, and what the user gets.

Each case does one thing a user might do wrong, on tiny models built here: it must raise one
exception type with a message that names the fix before any expensive work (at most `max_passes`
model passes), or be handled as its sentence says. The table in docs/reliability.md (tools/bad_inputs.py)
quotes the messages the cases raise; `test_readme_table_is_current` fails until
`python -m tools.bad_inputs` rewrites it.
"""

from __future__ import annotations

import re

import pytest

from tools.bad_input_cases import CASES
from tools.bad_inputs import Case, outcome, readme_block, render

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case):
    out = outcome(case)
    if case.error is None:
        assert out.error is None, f"{case.name}: {type(out.error).__name__}: {out.error}"
        case.check(out.result)
        return
    assert type(out.error) is case.error, \
        f"{case.name}: expected {case.error.__name__}, got {type(out.error).__name__}: {out.error}"
    assert re.search(case.match, out.message), out.message
    assert out.passes is None or out.passes <= case.max_passes, \
        f"{case.name}: {out.passes} model passes ran before the error"


def test_case_names_are_unique():
    assert len({case.name for case in CASES}) == len(CASES)


def test_readme_table_is_current():
    assert readme_block() == render(CASES) + "\n", \
        "the bad-inputs table (docs/reliability.md) is stale; run `python -m tools.bad_inputs`"
