"""Group entries through the library: what is written reads back, and any bytes read are checked.

The ``groups`` database of a log from someone else may hold anything, so every
entry evlog reads there either decodes as evlog wrote it or is a
:class:`~evlog.errors.DamagedLogError`; never another exception.
"""

from __future__ import annotations

import string

import hypothesis.strategies as st
import lmdb
import pytest
from hypothesis import HealthCheck, given, settings

from evlog import Log, groups
from evlog.backends.lmdb.store import Store
from evlog.errors import DamagedLogError

NAMES = st.text(alphabet=st.characters(min_codepoint=32, exclude_categories=("Cs",)), min_size=1, max_size=40)
PATTERNS = st.lists(st.text(alphabet=string.ascii_letters + "*.-", min_size=1, max_size=8), max_size=3)


@pytest.fixture(scope="module")
def store_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("entries") / "events.lmdb")
    with Log(path) as log:
        log.append("x", {})
    return path


def clear(store: Store) -> None:
    def work(txn: lmdb.Transaction) -> None:
        txn.drop(store.dbs[b"groups"], delete=False)

    store.write(work, notify=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, position=st.integers(0, 2**64 - 1), streams=PATTERNS, types=PATTERNS,
       where=st.none() | st.text(max_size=30), dead=st.lists(st.integers(1, 2**64 - 1), max_size=4, unique=True))
def test_what_is_written_reads_back(store_log: str, name: str, position: int, streams: list[str],
                                    types: list[str], where: str | None, dead: list[int]) -> None:
    if len(name.encode()) > groups.GROUP_NAME_BYTES:
        return
    with Log(store_log) as log:
        store = log.store(write=True)
        clear(store)
        filters = groups.Filters.of(streams, types, where)
        groups.create_group(store, name, position, filters)
        for seq in dead:
            groups.park(store, name, groups.DeadLetter(seq, 3, -9, 12345, False))
        found = groups.get_group(store, name)
        assert found is not None and found.filters == filters
        assert found.position == max([position, *dead])  # parking moves the group past its event
        assert [letter.seq for letter in groups.dead_letters(store, name)] == sorted(dead)
        assert [(group.name, count) for group, count in groups.list_groups(store)] == [(name, len(dead))]
        assert groups.remove_group(store, name)
        assert groups.list_groups(store) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.binary(min_size=1, max_size=30) | st.just(b"g"), value=st.binary(max_size=40))
def test_any_bytes_decode_or_are_damage(store_log: str, key: bytes, value: bytes) -> None:
    with Log(store_log) as log:
        store = log.store(write=True)
        clear(store)
        store.write(lambda txn: txn.put(key, value, db=store.dbs[b"groups"]), notify=False)
        for read in (lambda: groups.list_groups(store), lambda: groups.get_group(store, "g"),
                     lambda: groups.dead_letters(store, "g")):
            try:
                read()
            except DamagedLogError as exc:
                assert str(exc).startswith("damaged log: group ")
                assert "\x1b" not in str(exc) and "\n" not in str(exc)


def test_shell_word_quotes_a_name_for_a_suggested_command() -> None:
    assert groups.shell_word("billing") == "billing"
    assert groups.shell_word("two words") == "'two words'"
    assert groups.shell_word("a\u202eb") == "'a\\u202eb'"
