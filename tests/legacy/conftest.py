"""Fixtures of the legacy import tests: the sample export."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .exports import SAMPLE


@pytest.fixture
def sample_path() -> str:
    return str(SAMPLE)


@pytest.fixture
def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text())
