"""Overviews of a log on a server (``evlog stats``, ``evlog streams``) from counts, not records.

A stream's version is the number of messages on its subject (deletes are
denied), and the server gives every subject's count in one request
(``subject_counts``): so the streams of a log, their versions and the
number of events in any stream come without reading a record. The type
counts come from the derived index in the ``meta`` bucket, taken back to
the head of the same request when the index has run ahead of it. A
stream's first and last events are one look-up each (the first message on
its subject, the last one), and each is checked to be an event of that
stream at the version its place says (a message on another stream's
subject would otherwise give a wrong answer).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ...errors import DamagedLogError
from ...record import decode_body
from .. import StreamEntry, Totals
from .messages import StoredMsg
from .url import stream_of_subject, streams_filter

if TYPE_CHECKING:
    from .backend import JetStreamBackend


def _streams(backend: JetStreamBackend, counts: dict[str, int]) -> list[tuple[str, int, str]]:
    """``(stream, version, subject)`` of per-subject counts; a subject that names no stream is damage."""
    named = []
    for subject, count in counts.items():
        try:
            stream = stream_of_subject(backend.name, subject)
        except ValueError:
            raise DamagedLogError(f"the log's stream has messages on subject {subject!r}, which names no "
                                  "event stream") from None
        if stream is None:
            raise DamagedLogError(f"the log's stream has messages on subject {subject!r} for no stream")
        named.append((stream, count, subject))
    return named


def totals(backend: JetStreamBackend, top: int) -> Totals:
    """The head, type and stream counts of the whole log as of one head."""
    client = backend.client
    info = client.stream_info(subjects_filter=streams_filter(backend.name))
    head = info.last_seq
    if info.messages != head:
        missing = 1 if info.first_seq != 1 else None
        raise DamagedLogError(f"the stream holds {info.messages} messages up to seq {head}: the log has a gap",
                              seq=missing)
    index = backend._index()  # brought up to at least this head
    types = dict(index.types)
    if index.upto > head:  # appended meanwhile: counted back out, so that every count is of this head
        for first, values in backend.raw_range(head + 1, index.upto):
            assert isinstance(first, int)
            for seq, value in enumerate(values, first):
                etype = decode_body(value, seq)[3]
                types[etype] -= 1
                if not types[etype]:
                    del types[etype]
    named = _streams(backend, info.subjects or {})
    best = heapq.nsmallest(top, ((stream, count) for stream, count, _ in named),
                           key=lambda item: (-item[1], item[0]))
    return Totals(head, types, sum(count for _, count, _ in named), len(named), best)


class StreamIndex:
    """The streams of a log on a server, with the times of their first and last events kept for :meth:`ts_of`."""

    def __init__(self, backend: JetStreamBackend) -> None:
        self.backend = backend
        self.times: dict[int, int] = {}

    def entries(self, prefix: str) -> Iterator[StreamEntry]:
        """Each stream whose name starts with ``prefix``, in name order: version, first and last seq."""
        client = self.backend.client
        named = _streams(self.backend, client.subject_counts(streams_filter(self.backend.name)))
        for stream, version, subject in sorted(named):
            if not stream.startswith(prefix):
                continue
            # Both from the leader: a replica that lags could give a last event older than the count.
            first = client.get_next(1, subject)
            last = client.get_last(subject, leader=True)
            if first is None or last is None:
                raise DamagedLogError(f"stream {stream!r} has {version} events on its subject, but they "
                                      "cannot be read")
            self._check(first, stream, 1)
            self._check(last, stream, version)
            yield stream, version, first.seq, last.seq

    def _check(self, message: StoredMsg, stream: str, version: int) -> None:
        """The message must be the event of ``stream`` at ``version``: its subject says it is."""
        envelope = decode_body(message.data, message.seq)
        if envelope[4] != stream:
            raise DamagedLogError(f"is an event of stream {envelope[4]!r} on the subject of {stream!r}",
                                  seq=message.seq)
        if envelope[2] != version:
            raise DamagedLogError(f"is version {envelope[2]} of {stream!r}, but it is event {version} of that "
                                  "stream", seq=message.seq)
        self.times[message.seq] = envelope[1]

    def ts_of(self, seqs: Sequence[int]) -> list[int]:
        """The ts of each event: those the entries read are not read again."""
        times = self.times
        return [times.pop(seq) if seq in times else self.backend.ts_at(seq) for seq in seqs]
