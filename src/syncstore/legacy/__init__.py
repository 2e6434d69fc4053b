"""Importing the legacy browser export (the old web app's localStorage).

    from syncstore.legacy import import_legacy, rollback_import
    report = import_legacy(store, "export.json")
    rollback_import(store, report.import_id)

The format is described in ``docs/migrating-from-localstorage.md``, with the
mapping of every field.
"""

from syncstore.legacy.errors import ExportFormatError, IntegrityCheckError, StrictImportError
from syncstore.legacy.history import list_imports
from syncstore.legacy.importer import import_legacy
from syncstore.legacy.report import ImportRecord, ImportReport, RollbackReport
from syncstore.legacy.rollback import rollback_import
from syncstore.legacy.scan import find_in_synced_data

__all__ = [
    "ExportFormatError",
    "ImportRecord",
    "ImportReport",
    "IntegrityCheckError",
    "RollbackReport",
    "StrictImportError",
    "find_in_synced_data",
    "import_legacy",
    "list_imports",
    "rollback_import",
]
