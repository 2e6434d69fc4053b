"""Signed tokens: tenant and scopes in, forged and expired ones out, the secret never shown."""

from __future__ import annotations

import time

import jwt
import pytest

from syncstore.errors import AuthError

from syncstore_server import auth

SECRET = auth.Secret("k" * 40, source="tests")


def test_a_minted_token_verifies_with_its_tenant_scopes_and_expiry():
    now = time.time()
    token = auth.mint_token(SECRET, tenant="acme", scopes=["read", "sync"], ttl_s=600, now=now)
    identity = auth.verify_token(SECRET, token, now=now + 1)
    assert identity.tenant == "acme"
    assert identity.scopes == frozenset({"read", "sync"})
    assert identity.expires_at_ms == int(now + 600) * 1000


def test_expired_forged_and_malformed_tokens_say_what_is_wrong():
    now = time.time()
    token = auth.mint_token(SECRET, tenant="acme", ttl_s=60, now=now)
    with pytest.raises(AuthError, match="expired"):
        auth.verify_token(SECRET, token, now=now + 61)
    other = auth.Secret("o" * 40, source="tests")
    with pytest.raises(AuthError, match="signature"):
        auth.verify_token(other, token)
    with pytest.raises(AuthError, match="malformed"):
        auth.verify_token(SECRET, "abc.def")
    with pytest.raises(AuthError, match="no token"):
        auth.verify_token(SECRET, "")


def test_a_token_without_a_tenant_or_with_another_algorithm_is_refused():
    no_tenant = jwt.encode({"iss": "syncstore", "scopes": ["sync"], "iat": 1}, SECRET.reveal(), algorithm="HS256")
    with pytest.raises(AuthError, match="tenant"):
        auth.verify_token(SECRET, no_tenant)
    unsigned = jwt.encode({"iss": "syncstore", "tenant": "a", "scopes": ["sync"], "iat": 1}, None, algorithm="none")
    with pytest.raises(AuthError):
        auth.verify_token(SECRET, unsigned)


def test_minting_checks_its_input():
    with pytest.raises(AuthError, match="scopes"):
        auth.mint_token(SECRET, tenant="a", scopes=["root"])
    with pytest.raises(AuthError, match="tenant"):
        auth.mint_token(SECRET, tenant="")
    forever = auth.mint_token(SECRET, tenant="a", ttl_s=None)
    assert auth.verify_token(SECRET, forever).expires_at_ms is None


def test_the_secret_comes_from_a_file_the_environment_or_dev_mode_only(tmp_path):
    path = tmp_path / "secret"
    path.write_text("f" * 40 + "\n")
    assert auth.load_secret(secret_file=path).reveal() == b"f" * 40
    assert auth.load_secret(environ={"SYNCSTORE_SECRET": "e" * 40}).reveal() == b"e" * 40
    with pytest.raises(AuthError, match="no signing secret"):
        auth.load_secret(environ={})
    assert auth.load_secret(environ={}, dev=True).source == "development mode"
    with pytest.raises(AuthError, match="too short"):
        auth.load_secret(environ={"SYNCSTORE_SECRET": "short"})
    with pytest.raises(AuthError, match="cannot read"):
        auth.load_secret(secret_file=tmp_path / "missing")


def test_the_secret_never_shows_itself():
    secret = auth.Secret("super-secret-value-" + "x" * 20, source="tests")
    assert "super-secret" not in repr(secret) and "super-secret" not in str(secret)
