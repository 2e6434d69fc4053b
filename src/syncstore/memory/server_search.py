"""Kept at this path for existing imports: the definitions live in
:mod:`syncstore.shared.memory.server_search`, which the sync server uses too."""

from syncstore.shared.memory.server_search import *  # noqa: F401,F403
from syncstore.shared.memory.server_search import __all__  # noqa: F401
