"""An embedder that calls any OpenAI-compatible ``POST {base_url}/embeddings``.

Works with hosted APIs and with local servers that speak the same protocol.
Each call: texts go in batches of ``batch_size``; a batch that fails with a
connection error, a timeout, HTTP 429 or a 5xx is retried ``attempts`` times
with exponential backoff and jitter; any other HTTP error fails at once (the
request itself is wrong, retrying cannot help). Around all of it a circuit
breaker: after ``failure_threshold`` failed calls in a row, calls fail at once
with :class:`~syncstore.errors.CircuitOpenError` for ``reset_timeout`` seconds
instead of waiting on a service that is down. Every failure surfaces as an
:class:`~syncstore.errors.ExternalServiceError` naming the endpoint, with the
HTTP status where there is one.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Sequence

import httpx
import numpy as np

from syncstore.errors import ExternalServiceError
from syncstore.shared.embedders.base import Embedder, normalize_rows
from syncstore.resilience import CircuitBreaker, retry

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(ExternalServiceError):
    """A failure worth another attempt (connection, timeout, 429, 5xx)."""


class HttpEmbedder(Embedder):
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimensions: int | None = None,
        request_dimensions: bool = False,
        model_id: str | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        attempts: int = 3,
        retry_base: float = 0.5,
        retry_max: float = 8.0,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        """``base_url`` is the API root (the part before ``/embeddings``, often
        ending in ``/v1``); ``model`` is sent as the request's model. The vector
        space is recorded as ``model_id`` (default ``model``). ``dimensions``, when
        given, is checked against every answer, and sent in the request when
        ``request_dimensions`` is set (for models that can shorten their vectors)."""
        if batch_size < 1 or attempts < 1:
            raise ValueError("batch_size and attempts must be at least 1")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.request_model = model
        self.model = model_id or model
        self.dimensions = dimensions
        self.request_dimensions = request_dimensions
        self.batch_size = batch_size
        self.attempts = attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._sleep = sleep
        self._rng = rng
        self.breaker = CircuitBreaker(name=self.url, failure_threshold=failure_threshold, reset_timeout=reset_timeout)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout), headers=all_headers, follow_redirects=False
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts; use embed_one for one text")
        if not texts:
            return np.zeros((0, self.dimensions or 0), dtype=np.float32)
        parts = [self._embed_batch(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        return np.vstack(parts)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.request_model, "input": texts, "encoding_format": "float"}
        if self.request_dimensions and self.dimensions:
            body["dimensions"] = self.dimensions

        def attempt() -> httpx.Response:
            return self._post(body)

        def with_retries() -> httpx.Response:
            return retry(
                attempt,
                attempts=self.attempts,
                retry_on=(_Retryable,),
                base=self.retry_base,
                maximum=self.retry_max,
                sleep=self._sleep,
                rng=self._rng,
            )

        try:
            response = self.breaker.call(with_retries)
        except _Retryable as exc:
            raise ExternalServiceError(
                f"{exc} (gave up after {self.attempts} attempts)", service=self.url, status=exc.status
            ) from None
        if response.status_code >= 400:
            # A request the service refuses is not the service being down: it
            # does not count against the circuit breaker.
            raise ExternalServiceError(
                f"{self.url} refused the request: HTTP {response.status_code}: {_snippet(response)}",
                service=self.url,
                status=response.status_code,
            )
        return self._parse(response, len(texts))

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"{self.url} timed out ({type(exc).__name__})", service=self.url) from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"{self.url} is unreachable: {exc}", service=self.url) from None
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(
                f"{self.url} failed: HTTP {response.status_code}: {_snippet(response)}",
                service=self.url,
                status=response.status_code,
            )
        return response

    def _parse(self, response: httpx.Response, count: int) -> np.ndarray:
        def bad(problem: str) -> ExternalServiceError:
            return ExternalServiceError(f"{self.url} gave an unusable answer: {problem}", service=self.url, status=response.status_code)

        try:
            payload = response.json()
            items = sorted(payload["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise bad(f"not an embeddings response ({type(exc).__name__}: {exc})") from None
        if vectors.ndim != 2 or vectors.shape[0] != count:
            raise bad(f"expected {count} vectors, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise bad("a vector has a non-finite component")
        if self.dimensions is None:
            self.dimensions = int(vectors.shape[1])
        elif vectors.shape[1] != self.dimensions:
            raise bad(f"expected {self.dimensions} dimensions, got {vectors.shape[1]}")
        return normalize_rows(vectors)


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] or response.reason_phrase
