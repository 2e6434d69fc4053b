"""The errors an import can end with; each is a :mod:`syncstore.errors` class,
so callers that catch ``SyncstoreError`` catch these too.

    ValidationError
    ├── ExportFormatError       the file is not a localStorage export at all
    └── StrictImportError       --strict and at least one item is invalid
    ReplicaError
    └── IntegrityCheckError     after writing, the replica does not match the source

Both import errors carry the report, so the reasons can be shown; nothing is
written when either is raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncstore.errors import ReplicaError, ValidationError

if TYPE_CHECKING:
    from syncstore.legacy.report import ImportReport


class ExportFormatError(ValidationError):
    pass


class StrictImportError(ValidationError):
    def __init__(self, report: ImportReport):
        self.report = report
        count = len(report.skipped)
        super().__init__(f"--strict: {count} invalid item{'s' if count != 1 else ''}; nothing was imported")


class IntegrityCheckError(ReplicaError):
    def __init__(self, report: ImportReport):
        self.report = report
        problems = report.integrity.problems if report.integrity else []
        super().__init__("the integrity check failed, nothing was imported: " + "; ".join(problems[:5]))
