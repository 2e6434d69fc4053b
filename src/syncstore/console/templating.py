"""The console's pages: Jinja2 templates with autoescaping on for every file.

Every value that reaches a page, whatever replica wrote it, goes through
Jinja's escaping; no template marks data safe. :func:`render` answers with a
whole page, or with one block of it when the request asks for a fragment
(``?fragment=NAME``): that is how a live region refreshes itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping
from urllib.parse import urlencode

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse

from syncstore import schema
from syncstore.console.live import GENERATION_KEY
from syncstore.core.hlc import unpack

FRAGMENT = "fragment"


def when(value: Any) -> str:
    """A time as ``2025-07-17 10:00:00`` UTC (milliseconds when it has them)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        try:
            value = schema.parse_timestamp(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc)
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond // 1000:03d}"
        return text
    return str(value)


def clock(stamp: Any) -> str:
    """A hybrid logical clock stamp as its wall time and logical counter."""
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp <= 0:
        return "–"
    ms, counter = unpack(stamp)
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')}.{moment.microsecond // 1000:03d} #{counter}"


def site(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return "–" if value is None else str(value)


def show(value: Any, limit: int | None = None) -> str:
    """Any stored or decoded value as text: text as is, the rest as compact JSON."""
    if value is None:
        text = "–"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).hex()
    elif isinstance(value, dt.datetime):
        text = when(value)
    else:
        try:
            text = msgspec.json.encode(value, order="sorted").decode()
        except (TypeError, msgspec.EncodeError):
            text = repr(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def as_json(value: Any) -> str:
    """A value as JSON text, for a value the person may edit and post back."""
    try:
        return msgspec.json.encode(value, order="sorted").decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def milliseconds(value: Any) -> str:
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    return f"{value:,.1f} ms"


def percent(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value < 1 else f"{value:,.2f}"
    return f"{value:,}"


def kind(value: Any) -> str:
    """The JSON type of a value, for the state tree's styling."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return "other"


class Templates:
    """The Jinja2 environment of the console's templates (``templates/`` of this package)."""

    def __init__(self, *, globals: Mapping[str, Any] | None = None):
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("syncstore.console", "templates"),
            autoescape=True,  # every template, whatever its name
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=when,
            clock=clock,
            site=site,
            show=show,
            as_json=as_json,
            ms=milliseconds,
            percent=percent,
            number=number,
            kind=kind,
        )
        self.env.globals.update(globals or {})
        # The shared macros, as ``m.name(...)`` in every template and every block
        # rendered alone (a block does not run its template's imports).
        self.env.globals["m"] = self.env.get_template("_macros.html").module

    def render(self, name: str, context: Mapping[str, Any], *, block: str | None = None) -> str:
        template = self.env.get_template(name)
        if block is None:
            return template.render(context)
        render_block = template.blocks.get(block)
        if render_block is None:
            raise KeyError(block)
        return "".join(render_block(template.new_context(dict(context))))


def fragment_url(request: Request, name: str) -> str:
    """This page's address asking for one of its blocks."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != FRAGMENT]
    query.append((FRAGMENT, name))
    return f"{request.url.path}?{urlencode(query)}"


def page_url(request: Request, **changes: Any) -> str:
    """This page's address with some query parameters changed (None removes one)."""
    query = {k: v for k, v in request.query_params.items() if k != FRAGMENT}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = str(value)
    return f"{request.url.path}?{urlencode(query)}" if query else request.url.path


def page_context(request: Request) -> dict[str, Any]:
    """What every page's template is given besides its own data."""
    console = request.app.state.console
    return {
        "request": request,
        "root": request.scope.get("root_path", ""),  # where the console is mounted ("" at the top)
        "csrf_token": console.csrf_token,
        "generation": request.scope.get(GENERATION_KEY, 0),
        "fragment_url": lambda block: fragment_url(request, block),
        "page_url": lambda **changes: page_url(request, **changes),
    }


def render(request: Request, name: str, context: Mapping[str, Any] | None = None, *, status: int = 200) -> HTMLResponse:
    """A page, or only the block ``?fragment=`` names when the template has it."""
    console = request.app.state.console
    values = {**page_context(request), **(context or {})}
    block = request.query_params.get(FRAGMENT)
    if block is None:
        values["banner"] = console.banner()  # whole pages only: a fragment never shows it
    else:
        try:
            return HTMLResponse(console.templates.render(name, values, block=block), status_code=status)
        except KeyError:
            return HTMLResponse("no such fragment", status_code=404)
    return HTMLResponse(console.templates.render(name, values), status_code=status)
