"""Kept at this path for existing imports: the definitions live in
:mod:`syncstore.shared.memory.filters`, which the sync server uses too."""

from syncstore.shared.memory.filters import *  # noqa: F401,F403
from syncstore.shared.memory.filters import __all__  # noqa: F401
