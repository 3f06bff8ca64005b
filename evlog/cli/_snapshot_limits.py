"""The reader's snapshot limits as options, shared by ``projection show`` and ``replay``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..snapshot_limits import DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_MAX_SIZE

DEFAULT_SNAPSHOT_MAX_SIZE_TEXT = f"{DEFAULT_SNAPSHOT_MAX_SIZE // 1024**2}M"

ReaderSnapshotEveryOption = Annotated[
    int,
    typer.Option("--snapshot-every", metavar="N", min=0,
                 help="Save a snapshot at most every N events (0: none). A projection's stored interval "
                      f"can make them rarer, never more frequent. Default {DEFAULT_SNAPSHOT_EVERY:,}; "
                      "e.g. --snapshot-every 1000000."),
]
SnapshotMaxSizeOption = Annotated[
    str,
    typer.Option("--snapshot-max-size", metavar="SIZE",
                 help="Save no snapshot larger than SIZE (bytes, or with K, M, G); a larger state is "
                      "folded but not saved, with a note. E.g. --snapshot-max-size 64M.",
                 rich_help_panel="Fold"),
]
