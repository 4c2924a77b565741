"""What the ``stratus`` command's modules share: the console they write to and the options
they take alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

#: Lines are never wrapped: a narrow or absent terminal keeps one line per message.
console = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Where databases, keys and clouds.yaml live "
                       "[default: $STRATUS_DATA_DIR or ~/.local/share/stratus].")]
