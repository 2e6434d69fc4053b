"""docs/console.md: its pictures exist, and the script that takes them takes every one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "console.md").read_text()
SCRIPT = (ROOT / "scripts" / "console_screenshots.py").read_text()


def test_every_picture_in_the_console_doc_exists_and_is_taken_by_the_script():
    pictures = re.findall(r"!\[[^\]]*\]\((images/console/([a-z_]+)\.png)\)", DOC)
    assert len(pictures) >= 10
    for path, name in pictures:
        data = (ROOT / "docs" / path).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
        assert f'("{name}", ' in SCRIPT, f"scripts/console_screenshots.py does not take {name}.png"

