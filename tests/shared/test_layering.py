"""The shared layer stands on core, schema and errors alone, and the sync server
takes memory search from it, never from the client's memory package."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import syncstore

SRC = pathlib.Path(syncstore.__file__).parent
SERVER = SRC.parent.parent / "server" / "syncstore_server"
# What a shared module may import from syncstore.
SHARED_MAY_USE = ("syncstore.core", "syncstore.schema", "syncstore.errors", "syncstore.storable", "syncstore.shared")
# The client's own parts, which the server must not take.
CLIENT_ONLY = ("syncstore.memory", "syncstore.cli", "syncstore.integrations", "syncstore.aio", "syncstore.workflows")


def imported(path: pathlib.Path) -> set[str]:
    """Every syncstore module a file imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("syncstore.") or name == "syncstore"}


def test_shared_modules_import_only_core_schema_errors_and_each_other():
    files = sorted((SRC / "shared").rglob("*.py"))
    assert files
    for path in files:
        for name in imported(path):
            assert name.startswith(SHARED_MAY_USE), f"{path.relative_to(SRC)} imports {name}"


def test_no_server_module_imports_the_clients_memory_package_or_other_client_parts():
    files = sorted(SERVER.rglob("*.py"))
    assert any(path.name == "memory_search.py" for path in files)
    for path in files:
        for name in imported(path):
            assert not name.startswith(CLIENT_ONLY), f"syncstore_server/{path.name} imports {name}"


def test_the_server_process_loads_no_module_of_the_clients_memory_package():
    code = (
        "import sys, syncstore_server.app, syncstore_server.admin\n"
        "loaded = sorted(m for m in sys.modules if m == 'syncstore.memory' or m.startswith('syncstore.memory.'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    shared = subprocess.run(
        [sys.executable, "-c", "import sys, syncstore_server.memory_search; print('syncstore.shared.memory.server_search' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert shared.stdout.strip() == "True"


def test_the_old_module_paths_give_the_same_objects():
    from syncstore.memory import Filters, HashingEmbedder, Ranking, filters, ranking, server_search
    from syncstore.shared.embedders import HashingEmbedder as SharedEmbedder
    from syncstore.shared.memory import filters as shared_filters
    from syncstore.shared.memory import ranking as shared_ranking
    from syncstore.shared.memory import server_search as shared_search

    assert Filters is filters.Filters is shared_filters.Filters
    assert Ranking is ranking.Ranking is shared_ranking.Ranking
    assert ranking.top_k is shared_ranking.top_k
    assert server_search.search_memory is shared_search.search_memory
    assert HashingEmbedder is SharedEmbedder
