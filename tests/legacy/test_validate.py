"""Per-item validation: each problem with its reason; a token is never quoted."""

from __future__ import annotations

import pytest

from syncstore.legacy.validate import STATUS_MAP, check_environment, check_task

from .exports import make_environment, make_task


def test_a_valid_task_has_no_problems():
    assert check_task(make_task()) == []


@pytest.mark.parametrize(
    "fields,reason",
    [
        ({"id": None}, "missing id"),
        ({"id": ""}, "missing id"),
        ({"id": "task-1"}, "id is not a UUID: 'task-1'"),
        ({"id": 7}, "id is not a UUID: 7"),
        ({"title": None}, "missing title"),
        ({"title": "   "}, "title is not a non-empty text"),
        ({"status": None}, "missing status"),
        ({"status": "SHIPPED"}, "unknown status 'SHIPPED'"),
        ({"status": "done"}, "unknown status 'done'"),
        ({"status": {"x": 1}}, "unknown status"),
        ({"createdAt": None}, "missing createdAt"),
        ({"updatedAt": None}, "missing updatedAt"),
        ({"updatedAt": "not a date"}, "updatedAt is not an ISO-8601 date with a timezone: 'not a date'"),
        ({"createdAt": "2025-07-17T10:00:00"}, "createdAt is not an ISO-8601 date with a timezone"),
        ({"createdAt": 1752746400000}, "createdAt is not a date: 1752746400000"),
        ({"pullRequest": "https://github.com/o/r/pull/1"}, "pullRequest is not an object"),
        ({"messages": "hello"}, "messages is not a list"),
        ({"messages": ["hello"]}, "message 0 is not an object"),
        ({"messages": [{"role": "bot", "type": "message", "data": {}}]}, "message 0 has an unknown role 'bot'"),
        ({"messages": [{"role": "user", "type": 5, "data": {}}]}, "message 0 has an invalid type 5"),
    ],
)
def test_each_problem_has_its_reason(fields, reason):
    problems = check_task(make_task(**fields))
    assert any(reason in p for p in problems), problems


def test_every_problem_of_an_item_is_listed():
    problems = check_task({"title": "", "status": "NOPE"})
    assert problems[:2] == ["missing id", "missing title"]
    assert len(problems) == 5  # id, title, status, createdAt, updatedAt


def test_not_an_object():
    assert check_task("a task") == ["not an object"]
    assert check_environment(None) == ["not an object"]


def test_the_status_words_of_the_old_app_all_map():
    assert set(STATUS_MAP) == {"IN_PROGRESS", "DONE", "MERGED", "PAUSED", "CANCELLED"}
    assert STATUS_MAP["PAUSED"] == "paused" and STATUS_MAP["MERGED"] == "merged"
    assert STATUS_MAP["DONE"] == "completed"


def test_environment_problems_never_show_the_token():
    assert check_environment(make_environment()) == []
    token_like = ["gho_secret"]
    problems = check_environment(make_environment(githubToken=token_like, name=None))
    assert problems == ["missing name", "githubToken is not text"]
    assert "gho_secret" not in " ".join(problems)
