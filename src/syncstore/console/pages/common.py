"""What the page modules share: the store of a request, pagination, redirects."""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence, TypeVar

from starlette.requests import Request
from starlette.responses import RedirectResponse

from syncstore.console.forms import page_number
from syncstore.store import Store

PAGE_SIZE = 50
T = TypeVar("T")


def store_of(request: Request) -> Store:
    return request.app.state.console.store


def params_of(request: Request) -> dict[str, str]:
    """The query parameters, blank ones left out (an empty filter means no filter)."""
    return {key: value for key, value in request.query_params.items() if value.strip() and key != "fragment"}


def see_other(request: Request, path: str) -> RedirectResponse:
    """After a POST: go to the console page ``path`` (under wherever the console is
    mounted) that shows the result; a reload then does not post again."""
    return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)


class Page(NamedTuple):
    number: int
    size: int
    count: int  # rows on this page
    has_next: bool

    @property
    def first(self) -> int:
        return (self.number - 1) * self.size + 1 if self.count else 0

    @property
    def last(self) -> int:
        return (self.number - 1) * self.size + self.count


def paged(fetch: Callable[..., Sequence[T]], params: Mapping[str, str], *, size: int = PAGE_SIZE) -> tuple[list[T], Page]:
    """One page of ``fetch(limit=..., offset=...)``; one row more is read to know whether
    another page follows (no count of the whole table)."""
    number = page_number(params)
    found = list(fetch(limit=size + 1, offset=(number - 1) * size))
    rows = found[:size]
    return rows, Page(number, size, len(rows), len(found) > size)


def choice(params: Mapping[str, str], name: str, allowed: Sequence[str]) -> str | None:
    """A filter that must be one of ``allowed``; anything else is a ValidationError."""
    from syncstore.errors import ValidationError

    value = params.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise ValidationError(f"must be one of {', '.join(allowed)}", field=name)
    return value

