"""Each bad input in tests/bad_inputs.py gets a BertLearnError (or a warning where the input is usable),
and docs/reliability.md shows exactly the messages the code gives today."""

from __future__ import annotations

import pytest

from bad_inputs import ROOT, SCENARIOS, outcomes, table

WARN_ONLY = ("(clipped)", "(read as cp1252)", "(trains, with a warning)", "(warning)")


@pytest.fixture(scope="module")
def results():
    return {what: (outcome, message) for what, outcome, message in outcomes()}


@pytest.mark.parametrize("what", [w for w, _ in SCENARIOS])
def test_scenario_fails_clearly_or_warns(results, what):
    outcome, message = results[what]
    if what.endswith(WARN_ONLY):
        assert outcome == "UserWarning", (outcome, message)
    else:
        assert outcome in {"DataError", "ModelError", "NotFittedError", "BertLearnError"}, (outcome, message)
        assert len(message) > 30


def test_reliability_doc_is_current(results):
    doc = (ROOT / "docs" / "reliability.md").read_text()
    expected = table([(w, *results[w]) for w, _ in SCENARIOS])
    assert expected in doc, "docs/reliability.md is stale: run `python tests/bad_inputs.py`"
