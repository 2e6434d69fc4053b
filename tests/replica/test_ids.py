"""Row ids: the UUIDv7 the replica makes, and what counts as a UUID."""

from __future__ import annotations

import time
import uuid

import pytest

from syncstore import schema
from syncstore.core.ids import uuid7
from syncstore.errors import ValidationError


def test_uuid7_is_a_version_7_rfc_variant_uuid_in_canonical_form():
    for _ in range(2_000):
        made = uuid7()
        parsed = uuid.UUID(made)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == made  # lower case, dashes where uuid puts them


def test_uuid7_carries_the_time_in_milliseconds_and_sorts_by_it():
    before = time.time_ns() // 1_000_000
    made = []
    for _ in range(3):
        made.append(uuid7())
        time.sleep(0.002)  # the next id is in a later millisecond
    after = time.time_ns() // 1_000_000
    stamps = [uuid.UUID(m).int >> 80 for m in made]
    assert before <= stamps[0] < stamps[1] < stamps[2] <= after
    assert made == sorted(made)


def test_uuid7_random_bits_differ():
    assert len({uuid7() for _ in range(10_000)}) == 10_000


@pytest.mark.parametrize(
    "value, ok",
    [
        ("01a215e4-e4c7-7804-a2c7-00000000dead", True),
        ("01A215E4-E4C7-7804-A2C7-00000000DEAD", True),
        (str(uuid.uuid4()), True),
        ("01a215e4-e4c7-7804-a2c7-00000000dead\n", False),  # "$" would take it
        ("01a215e4-e4c7-7804-a2c7-00000000deadbeef", False),
        ("01a215e4e4c77804a2c700000000dead", False),
        ("", False),
        (None, False),
        (b"01a215e4-e4c7-7804-a2c7-00000000dead", False),
        (uuid.UUID(int=1), False),
    ],
)
def test_is_uuid(value, ok):
    assert schema.is_uuid(value) is ok
    if isinstance(value, str):
        assert (schema.UUID_PATTERN.match(value) is not None) is ok


def test_an_id_with_a_trailing_newline_is_refused(store):
    with pytest.raises(ValidationError, match="UUID"):
        store.insert("tasks", {"id": "01a215e4-e4c7-7804-a2c7-00000000dead\n", "title": "t"})
    with pytest.raises(ValidationError, match="UUID"):
        schema.validate_row(schema.table("tasks"), {"id": "01a215e4-e4c7-7804-a2c7-00000000dead\n", "title": "t"}, insert=True)
