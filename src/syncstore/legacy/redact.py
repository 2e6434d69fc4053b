"""Keeping GitHub tokens out of synced rows and out of anything printed.

An environment's token goes to the local secret table (see :mod:`.secrets`).
The same token, or another, can also sit inside text: a shell output that
printed a clone URL, a prompt with a pasted token. Such text is imported with
each token replaced by :data:`MARK`. Tokens are recognised two ways: the
exact tokens of the export's environments, and GitHub's published token
formats (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

MARK = "[redacted GitHub token]"
# No lookbehind for a word boundary: it makes the scan of a large export 30x
# slower, and redacting a token glued to other text is the safe side anyway.
PATTERN = re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}")
_BYTES_PATTERN = re.compile(PATTERN.pattern.encode())


def find_tokens(blob: bytes, known: Iterable[str] = ()) -> set[str]:
    """The tokens that occur in ``blob``: any of ``known``, and any text in a
    GitHub token format."""
    found = {match.decode() for match in _BYTES_PATTERN.findall(blob)}
    found.update(token for token in known if token and token.encode() in blob)
    return found


class Redactor:
    """Replaces a set of tokens (longest first, so no token is left half-done)."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens = sorted({t for t in tokens if t}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def text(self, value: str) -> tuple[str, int]:
        count = 0
        for token in self.tokens:
            if token in value:
                count += value.count(token)
                value = value.replace(token, MARK)
        value, more = PATTERN.subn(MARK, value)
        return value, count + more

    def value(self, value: Any) -> tuple[Any, int]:
        """``value`` with every string in it (keys too) redacted, and how many
        tokens were replaced."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            total = 0
            out = []
            for item in value:
                item, count = self.value(item)
                out.append(item)
                total += count
            return out, total
        if isinstance(value, dict):
            total = 0
            result = {}
            for key, item in value.items():
                key, key_count = self.text(key) if isinstance(key, str) else (key, 0)
                item, count = self.value(item)
                result[key] = item
                total += key_count + count
            return result, total
        return value, 0


def scrub(text: str, tokens: Iterable[str] = ()) -> str:
    """``text`` safe to print: known tokens and token-shaped text replaced."""
    return Redactor(tokens).text(text)[0]
