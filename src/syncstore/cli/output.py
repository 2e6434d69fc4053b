"""How commands print: rich tables for people, JSON for programs."""

from __future__ import annotations

import sys
from typing import Any, Iterable, Sequence

import click
import msgspec
from rich.console import Console
from rich.table import Table


def console() -> Console:
    out = Console(soft_wrap=True)
    if not out.is_terminal:
        # Piped or captured: whole lines (no cut ids or titles); the reader's tools wrap.
        out.width = 1_000
    return out


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    raise TypeError(f"cannot show a {type(obj).__name__} as JSON")


def emit_json(value: Any) -> None:
    """Print one JSON document (records, lists, dicts; bytes as hex)."""
    click.echo(msgspec.json.encode(value, enc_hook=_enc_hook).decode())


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = Table(title=title, show_lines=False)
    for name in columns:
        if name == "id" or name.endswith("_id"):
            # Ids are what people copy into the next command: never cut or wrap them.
            out.add_column(name, no_wrap=True, min_width=36)
        else:
            out.add_column(name)
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    console().print(out)


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
