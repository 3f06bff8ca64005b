"""Property: whatever JSON states a fold makes, batch after batch, the table reads back as those states.

The projection ``--by stream --fold 's = d'`` makes each event's data its
stream's state, so hypothesis chooses the states directly: objects whose
keys come and go and change type, plain values, null (a removed key). After
every batch the table, read back by the types its checkpoint records, equals
the states folded afresh: on every target (``target_url``), each example in
a table of its own. Text has no NUL: PostgreSQL cannot store one (a clear
error, tested with the other refusals). Numbers are compared as numbers:
jsonb keeps their values, not their spelling.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sinks import expected_states, table_states, target_url

from evlog import Log
from evlog.sinks import sync_projection

TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
SCALARS = (st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(TEXT, max_size=8) | st.booleans())
JSON = st.recursive(st.none() | SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(TEXT, max_size=3), inner, max_size=3), max_leaves=6)
STATES = (st.none() | SCALARS | st.lists(JSON, max_size=2)
          | st.dictionaries(st.sampled_from(["a", "b", "c", "value", "Ünï code"]), JSON, max_size=4))
BATCHES = st.lists(st.lists(st.tuples(st.integers(0, 4), STATES), min_size=1, max_size=6), min_size=1, max_size=4)

_examples = itertools.count()

__all__ = ["target_url"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batches=BATCHES)
def test_the_table_reads_back_as_the_states_after_every_batch(
    target_url: str, batches: list[list[tuple[int, Any]]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        log_path = str(Path(directory) / "events.lmdb")
        table = f"p{next(_examples)}"  # the database is the fixture's, shared by the examples
        for number, batch in enumerate(batches):
            with Log(log_path) as log:
                log.append_many([{"type": "set", "stream": f"s{key}", "data": state} for key, state in batch])
            if number == 0:
                result = run_evlog("projection", "add", "p", "--by", "stream", "--fold", "s = d", log=log_path)
                assert result.returncode == 0, result.stderr
            with Log(log_path) as log:
                report = sync_projection(log, "p", target_url, table=table)
                assert report.last_seq == log.head()
            last_seq, states = table_states(target_url, table)
            assert numbers(states) == numbers(expected_states(log_path, "p", last_seq))


def numbers(value: Any) -> Any:
    """``value`` with every number a float: PostgreSQL's jsonb keeps a number's value, not whether it was
    written as an integer (``2.5e16`` comes back as ``25000000000000000``)."""
    if isinstance(value, dict):
        return {key: numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numbers(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value
