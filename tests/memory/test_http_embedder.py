"""The HTTP embedder against a real local server: answers, retries, refusals, a dead endpoint, the breaker."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from syncstore.errors import CircuitOpenError, ExternalServiceError
from syncstore.memory import HttpEmbedder, Memory


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up is part of the tests


class EmbeddingServer:
    """An OpenAI-compatible /v1/embeddings on 127.0.0.1 whose behaviour a test scripts.

    ``script`` is a list of what to do for the next requests ("ok", an HTTP
    status, "garbage", "short", "slow"); when it runs out, requests succeed.
    """

    def __init__(self):
        self.script: list[object] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                action = server.script.pop(0) if server.script else "ok"
                if action == "slow":
                    time.sleep(1.0)
                    action = "ok"
                if isinstance(action, int):
                    self.reply(action, {"error": {"message": f"scripted {action}"}})
                elif action == "garbage":
                    self.reply(200, "not json at all", raw=True)
                elif action == "short":
                    self.reply(200, {"data": [], "model": body["model"]})
                else:
                    data = [{"index": i, "embedding": server.vector(text)} for i, text in enumerate(body["input"])]
                    data.reverse()  # the protocol gives an index; order must come from it
                    self.reply(200, {"object": "list", "data": data, "model": body["model"]})

            def reply(self, status, payload, raw=False):
                data = payload.encode() if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @staticmethod
    def vector(text: str) -> list[float]:
        # Deterministic, and texts sharing a first word point the same way.
        seed = sum(text.split()[0].encode()) if text.split() else 0
        return np.random.default_rng(seed).standard_normal(8).tolist()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = EmbeddingServer()
    yield running
    running.close()


def embedder(base_url: str, **options) -> HttpEmbedder:
    options = {"retry_base": 0.01, "retry_max": 0.02, "timeout": 5.0, **options}
    return HttpEmbedder(base_url=base_url, model="test-embed", **options)


def test_embeds_in_batches_in_input_order_with_the_key(server):
    with embedder(server.base_url, api_key="sk-test", batch_size=2) as client:
        vectors = client.embed(["alpha one", "beta two", "alpha three"])
    assert vectors.shape == (3, 8) and client.dimensions == 8
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2])  # same first word, same direction
    assert not np.allclose(vectors[0], vectors[1])
    assert [len(r["body"]["input"]) for r in server.requests] == [2, 1]
    assert server.requests[0]["path"] == "/v1/embeddings" and server.requests[0]["auth"] == "Bearer sk-test"
    assert server.requests[0]["body"]["model"] == "test-embed"


def test_server_errors_are_retried_with_backoff(server):
    server.script = [503, 500]
    pauses = []
    with embedder(server.base_url, attempts=3, sleep=pauses.append) as client:
        assert client.embed(["alpha"]).shape == (1, 8)
    assert len(server.requests) == 3 and len(pauses) == 2 and all(p > 0 for p in pauses)


def test_a_refused_request_fails_at_once_with_the_status(server):
    server.script = [400]
    with embedder(server.base_url, attempts=3) as client:
        with pytest.raises(ExternalServiceError) as caught:
            client.embed(["alpha"])
    assert caught.value.status == 400 and "scripted 400" in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("answer", ["garbage", "short"])
def test_unusable_answers_are_clear_errors(server, answer):
    server.script = [answer]
    with embedder(server.base_url) as client:
        with pytest.raises(ExternalServiceError, match="unusable answer"):
            client.embed(["alpha"])


def test_wrong_dimensions_are_refused(server):
    with embedder(server.base_url, dimensions=16) as client:
        with pytest.raises(ExternalServiceError, match="expected 16 dimensions"):
            client.embed(["alpha"])


def test_a_slow_endpoint_times_out(server):
    server.script = ["slow", "slow"]
    with embedder(server.base_url, timeout=0.2, attempts=2) as client:
        with pytest.raises(ExternalServiceError, match="timed out"):
            client.embed(["alpha"])


def _dead_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_a_down_endpoint_is_a_clear_error_then_the_circuit_opens():
    with embedder(_dead_url(), attempts=2, failure_threshold=2, reset_timeout=60) as client:
        for _ in range(2):
            with pytest.raises(ExternalServiceError, match="unreachable.*gave up after 2 attempts"):
                client.embed(["alpha"])
        assert client.breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            client.embed(["alpha"])


def test_the_circuit_closes_again_once_the_service_answers(server):
    server.script = [503, 503]
    with embedder(server.base_url, attempts=1, failure_threshold=2, reset_timeout=0.05) as client:
        for _ in range(2):
            with pytest.raises(ExternalServiceError):
                client.embed(["alpha"])
        with pytest.raises(CircuitOpenError):
            client.embed(["alpha"])
        requests_while_open = len(server.requests)
        assert requests_while_open == 2  # the open circuit sent nothing
        time.sleep(0.1)  # past the reset timeout: one trial call goes through
        assert client.embed(["alpha"]).shape == (1, 8)
        assert client.breaker.state == "closed"


def test_memory_with_the_http_embedder_records_its_model(store, server):
    with embedder(server.base_url) as client:
        memory = Memory(store, embedder=client)
        try:
            added = memory.add("a", "alpha beta")
            memory.add("a", "gamma delta")
            assert added.embedding_model == "test-embed" and added.embedding_dimensions == 8
            assert memory.search("alpha", k=1)[0].memory.id == added.id
        finally:
            memory.close()


def test_a_failing_embedder_writes_nothing(store):
    with embedder(_dead_url(), attempts=1) as client:
        memory = Memory(store, embedder=client)
        try:
            with pytest.raises(ExternalServiceError):
                memory.add("a", "text")
        finally:
            memory.close()
    assert store.memory.count() == 0 and store.last_seq() == 0
