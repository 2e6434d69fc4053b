"""Signed tokens: HS256 JWTs carrying the tenant and scopes.

A token says which tenant its bearer writes as (``tenant``), what it may do
(``scopes``: ``sync`` to push and receive, ``read`` to receive only, ``admin``
for everything) and until when (``exp``). The server takes the tenant from the
token alone, never from a row a client sends.

The secret comes from ``SYNCSTORE_SECRET`` or a file; there is no built-in
secret except in explicit development mode (``--dev``), whose well-known
secret is fit only for a laptop. Neither the secret nor a token is ever logged.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Mapping

import jwt

from syncstore.core.server_session import Identity
from syncstore.errors import AuthError

ALGORITHM = "HS256"
SCOPES = ("sync", "read", "admin")
DEFAULT_SCOPES = ("sync",)
DEFAULT_TTL_S = 30 * 24 * 3600
MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its hash
MAX_TENANT = 200
ENV_SECRET = "SYNCSTORE_SECRET"
# Development mode only: anyone can mint tokens for it. Never used without --dev.
DEV_SECRET = "syncstore-development-secret-do-not-use-in-production"
ISSUER = "syncstore"


class Secret:
    """A signing secret that never shows itself in a repr, a log or a traceback."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str | bytes, *, source: str):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if len(raw) < MIN_SECRET_BYTES:
            raise AuthError(f"the secret from {source} is too short: use at least {MIN_SECRET_BYTES} bytes")
        self._value = raw
        self.source = source

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"

    def reveal(self) -> bytes:
        return self._value


def load_secret(
    *, secret_file: str | os.PathLike[str] | None = None, dev: bool = False, environ: Mapping[str, str] = os.environ
) -> Secret:
    """The signing secret: a file if given, else ``SYNCSTORE_SECRET``, else
    the development secret when ``dev`` is set; otherwise an AuthError."""
    if secret_file is not None:
        path = Path(secret_file)
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise AuthError(f"cannot read the secret file {path}: {exc.strerror}") from None
        return Secret(text, source=f"file {path}")
    value = environ.get(ENV_SECRET, "").strip()
    if value:
        return Secret(value, source=ENV_SECRET)
    if dev:
        return Secret(DEV_SECRET, source="development mode")
    raise AuthError(
        f"no signing secret: set {ENV_SECRET}, give --secret-file, or use --dev on a development machine"
    )


def mint_token(
    secret: Secret,
    *,
    tenant: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    ttl_s: int | None = DEFAULT_TTL_S,
    subject: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token for ``tenant``; ``ttl_s=None`` makes one that never expires."""
    _check_tenant(tenant)
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise AuthError(f"scopes are some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"iss": ISSUER, "tenant": tenant, "scopes": scopes, "iat": issued}
    if ttl_s is not None:
        if ttl_s <= 0:
            raise AuthError("a token's lifetime must be positive")
        claims["exp"] = issued + ttl_s
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, secret.reveal(), algorithm=ALGORITHM)


def verify_token(secret: Secret, token: str, *, now: float | None = None, leeway_s: float = 0) -> Identity:
    """Check a token's signature, expiry and claims; raise AuthError saying what is wrong."""
    if not isinstance(token, str) or not token:
        raise AuthError("no token")
    options = {"require": ["tenant", "scopes", "iat"], "verify_iat": False}
    try:
        if now is None:
            claims = jwt.decode(
                token, secret.reveal(), algorithms=[ALGORITHM], issuer=ISSUER, leeway=leeway_s, options=options
            )
        else:
            # PyJWT reads the clock itself; to check at a given time, check
            # the signature first, then the expiry here.
            claims = jwt.decode(
                token,
                secret.reveal(),
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={**options, "verify_exp": False},
            )
            if "exp" in claims and now >= claims["exp"] + leeway_s:
                raise jwt.ExpiredSignatureError("Signature has expired")
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired: mint a new one") from None
    except jwt.InvalidSignatureError:
        raise AuthError("the token's signature does not verify: it was not made with this server's secret") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"the token has no {exc.claim!r} claim") from None
    except jwt.InvalidIssuerError:
        raise AuthError("the token was not issued for syncstore") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"the token is malformed ({type(exc).__name__})") from None
    tenant = claims["tenant"]
    scopes = claims["scopes"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise AuthError("the token's scopes are not a list of names")
    _check_tenant(tenant)
    exp = claims.get("exp")
    if exp is not None and not isinstance(exp, (int, float)):
        raise AuthError("the token's expiry is not a number")
    return Identity(tenant, frozenset(scopes), None if exp is None else int(exp * 1000))


def _check_tenant(tenant: object) -> None:
    if not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TENANT or "\x00" in tenant:
        raise AuthError(f"a tenant is a name of 1 to {MAX_TENANT} characters")
