"""What an import or a rollback did, item by item: plain msgspec Structs that
encode to JSON as they are (``msgspec.json.encode(report)``).

A report never holds a secret: the GitHub token of an environment is counted,
never copied into any field.
"""

from __future__ import annotations

import msgspec


class Skipped(msgspec.Struct, kw_only=True):
    """An item that was not imported because it is invalid."""

    kind: str  # "task", "environment" or "key" (a store key that could not be read)
    index: int | None = None  # the item's place in its list in the export
    id: str | None = None
    reason: str


class Ignored(msgspec.Struct, kw_only=True):
    """A localStorage key, or a key inside a store, that holds nothing to import."""

    key: str
    reason: str


class Kept(msgspec.Struct, kw_only=True):
    """A row already here that the import left as it is, and why."""

    table: str
    id: str
    reason: str


class Duplicate(msgspec.Struct, kw_only=True):
    """An assistant message identical to an earlier one of the same task."""

    task_id: str
    position: int
    duplicate_of: int


class Counts(msgspec.Struct, kw_only=True):
    source: int = 0  # items in the export
    imported: int = 0  # new rows
    updated: int = 0  # rows here that the export had newer values for
    unchanged: int = 0  # rows here already equal to the export
    kept: int = 0  # rows here that changed since (or were deleted): left alone
    skipped: int = 0  # invalid items


class MessageCounts(msgspec.Struct, kw_only=True):
    source: int = 0
    imported: int = 0
    present: int = 0  # already here from an earlier import
    shell_pairs: int = 0  # shell calls matched with their output by call_id
    duplicates: int = 0


class SecretCounts(msgspec.Struct, kw_only=True):
    found: int = 0
    stored: int = 0  # written to the local-only secret table
    unchanged: int = 0
    replaced: int = 0
    dropped: int = 0  # discarded (--drop-secrets)


class IntegrityCheck(msgspec.Struct, kw_only=True):
    ok: bool
    checked: list[str] = []
    problems: list[str] = []


class ImportReport(msgspec.Struct, kw_only=True):
    import_id: str | None = None  # None when nothing was written (dry run, or all already here)
    source: str = ""
    dry_run: bool = False
    strict: bool = False
    drop_secrets: bool = False
    tasks: Counts = msgspec.field(default_factory=Counts)
    environments: Counts = msgspec.field(default_factory=Counts)
    messages: MessageCounts = msgspec.field(default_factory=MessageCounts)
    secrets: SecretCounts = msgspec.field(default_factory=SecretCounts)
    skipped: list[Skipped] = []
    ignored_keys: list[Ignored] = []
    kept: list[Kept] = []
    duplicates: list[Duplicate] = []
    warnings: list[str] = []
    integrity: IntegrityCheck | None = None
    seconds: float = 0.0

    @property
    def wrote(self) -> bool:
        """Whether the import changed the replica (or, in a dry run, would have)."""
        return bool(
            self.tasks.imported
            or self.tasks.updated
            or self.environments.imported
            or self.environments.updated
            or self.messages.imported
            or self.secrets.stored
            or self.secrets.replaced
        )


class RowRef(msgspec.Struct, kw_only=True):
    table: str
    id: str


class RollbackReport(msgspec.Struct, kw_only=True):
    import_id: str
    removed: list[RowRef] = []  # rows the import inserted, now deleted (tombstones that sync)
    restored: list[RowRef] = []  # rows the import updated, back to their earlier values
    kept: list[Kept] = []  # rows left as they are, and why
    messages_kept: int = 0  # task_messages is append-only: these stay, under removed tasks
    secrets_removed: int = 0


class ImportRecord(msgspec.Struct, kw_only=True):
    """One entry of the import history (``syncstore import list``)."""

    id: str
    imported_at: str
    source: str
    source_sha256: str
    tasks: int
    environments: int
    messages: int
    rolled_back_at: str | None = None


def to_json(report: msgspec.Struct) -> str:
    return msgspec.json.encode(report).decode()
