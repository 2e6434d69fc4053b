"""The console's gate: nothing without the run's token, state changes only by POST
with the CSRF token, the security headers on every answer."""

from __future__ import annotations

import pytest

from syncstore.console.gate import CONTENT_SECURITY_POLICY, MAX_FORM, cookie_name
from syncstore.console.serve import bind


@pytest.mark.parametrize("path", ["/tasks", "/events", "/static/console.css", "/_/banner", "/nope", "/sync"])
def test_every_path_is_refused_without_the_token(console, path):
    with console.client(signed_in=False) as anonymous:
        answer = anonymous.get(path)
    assert answer.status_code == 403
    assert "syncstore ui" in answer.text
    assert "<" not in answer.text  # a plain refusal, no page


def test_a_wrong_token_or_cookie_is_refused(console):
    with console.client(signed_in=False) as anonymous:
        assert anonymous.get("/tasks", params={"token": "x" * len(console.token)}).status_code == 403
        anonymous.cookies.set(cookie_name(console.port), console.token[:-1] + "x")
        assert anonymous.get("/tasks").status_code == 403
        # Another port's cookie is another console's: it does not open this one.
        anonymous.cookies.clear()
        anonymous.cookies.set(cookie_name(console.port + 1), console.token)
        assert anonymous.get("/tasks").status_code == 403


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_url(console):
    with console.client(signed_in=False) as browser_like:
        first = browser_like.get("/tasks", params={"token": console.token, "status": "pending"})
        assert first.status_code == 303
        assert first.headers["location"] == "/tasks?status=pending"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{cookie_name(console.port)}={console.token};")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
            assert attribute in cookie
        # The client kept the cookie: the page now opens without the token.
        page = browser_like.get(first.headers["location"])
        assert page.status_code == 200 and "<h1>Tasks</h1>" in page.text


def test_every_answer_carries_the_security_headers(console, client):
    answers = [client.get("/tasks"), client.get("/static/console.css"), client.get("/nope")]
    with console.client(signed_in=False) as anonymous:
        answers.append(anonymous.get("/tasks"))
    for answer in answers:
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(store, console, client):
    refused = client.post("/tasks", data={"title": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = client.post("/tasks", data={"title": "forged", "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert store.tasks.count() == 0
    created = console.post(client, "/tasks", {"title": "real"})
    assert created.status_code == 303
    assert [t.title for t in store.tasks.list()] == ["real"]


def test_the_csrf_header_is_accepted_as_htmx_sends_it(store, console, client):
    done = client.post("/tasks", data={"title": "by htmx"}, headers={"X-CSRF-Token": console.csrf})
    assert done.status_code == 303
    assert store.tasks.count() == 1


def test_a_post_from_another_site_is_refused_even_with_the_tokens(store, console, client):
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = console.post(client, "/tasks", {"title": "forged"}, headers=headers)
        assert refused.status_code == 403
    same = console.post(client, "/tasks", {"title": "mine"}, headers={"Origin": console.base})
    assert same.status_code == 303
    assert [t.title for t in store.tasks.list()] == ["mine"]


def test_other_methods_bodies_and_hosts_are_refused(store, console, client):
    assert client.put("/tasks", content=b"title=x").status_code == 405
    assert client.delete("/tasks").status_code == 405
    big = console.post(client, "/tasks", {"title": "x" * (MAX_FORM + 1)})
    assert big.status_code == 413
    as_json = client.post("/tasks", json={"title": "x"}, headers={"X-CSRF-Token": console.csrf})
    assert as_json.status_code == 415
    # A page fetched under another host name (DNS rebinding) is refused.
    assert client.get("/tasks", headers={"Host": f"evil.example:{console.port}"}).status_code == 400
    assert store.tasks.count() == 0


def test_the_console_listens_on_the_loopback_address_only():
    sock = bind(0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
    finally:
        sock.close()
