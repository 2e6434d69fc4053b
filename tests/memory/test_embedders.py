"""The hashing embedder (default) and the sentence-model embedder (the ``embeddings`` extra)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from syncstore.memory import HashingEmbedder, Memory, SentenceTransformerEmbedder
from syncstore.memory.embedders import sentence


def cos(a, b):
    return float(np.dot(a, b))


def test_hashing_is_deterministic_across_processes():
    text = "Deploying the billing service needs the VPN"
    here = HashingEmbedder().embed_one(text)
    code = (
        "import sys; from syncstore.memory import HashingEmbedder; "
        f"sys.stdout.buffer.write(HashingEmbedder().embed_one({text!r}).tobytes())"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert np.array_equal(here, np.frombuffer(there, dtype=np.float32))


def test_hashing_vectors_are_unit_length_and_lexical():
    embedder = HashingEmbedder()
    vectors = embedder.embed(["deploy the billing service", "deployment of billing services", "a recipe for lemon cake", ""])
    assert vectors.shape == (4, embedder.dimensions) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert not vectors[3].any()  # nothing to embed: the zero vector
    assert cos(vectors[0], vectors[1]) > 0.4  # shared words and word pieces
    assert abs(cos(vectors[0], vectors[2])) < 0.15
    # Lexical, not semantic: synonyms with no shared letters do not match.
    car, automobile = embedder.embed(["car", "automobile"])
    assert abs(cos(car, automobile)) < 0.2


def test_stop_words_do_not_make_texts_similar():
    a, b = HashingEmbedder().embed(["the cat is on the mat", "the economy is in a recession"])
    assert abs(cos(a, b)) < 0.15


def test_settings_are_part_of_the_model_name():
    assert HashingEmbedder().model != HashingEmbedder(dimensions=256).model
    assert HashingEmbedder().model != HashingEmbedder(ngram_range=(2, 4)).model
    custom = HashingEmbedder(dimensions=256, ngram_range=(2, 4), ngram_weight=0.75, bigram_weight=0)
    assert HashingEmbedder.from_model(custom.model).model == custom.model  # a server can rebuild it
    assert HashingEmbedder.from_model("sentence-transformers/all-MiniLM-L6-v2") is None
    with pytest.raises(ValueError):
        HashingEmbedder(dimensions=4)
    with pytest.raises(TypeError):
        HashingEmbedder().embed("one string")


def test_default_search_finds_memories_by_wording(store):
    store.memory.add("a", "The staging deploy needs VPN access first", memory_type="learned_pattern")
    store.memory.add("a", "The user prefers tea over coffee", memory_type="user_preference")
    store.memory.add("a", "Lemon cake recipe: flour, sugar, eggs, lemons", memory_type="knowledge_base")
    (best, *_) = store.memory.search("how to deploy to staging", k=3)
    assert "VPN" in best.memory.content


needs_model = pytest.mark.skipif(not sentence.available(), reason="the embeddings extra is not installed")


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformerEmbedder()


@needs_model
def test_sentence_model_loads_from_the_wheel_and_embeds_by_meaning(minilm):
    cat, kitten, revenue = minilm.embed(["a cat sat on the mat", "a kitten rested on the rug", "quarterly revenue report"])
    assert minilm.dimensions == 384 and cat.shape == (384,)
    assert cos(cat, kitten) > 0.4 > cos(cat, revenue)
    car, automobile = minilm.embed(["car", "automobile"])
    assert cos(car, automobile) > 0.6  # what the lexical embedder cannot do


@needs_model
def test_sentence_model_search_by_meaning(store, minilm):
    memory = Memory(store, embedder=minilm)
    try:
        memory.add("a", "The user is allergic to peanuts", memory_type="user_preference")
        memory.add("a", "Build failures come from a stale cache", memory_type="error_resolution")
        (best, _) = memory.search("what food should I avoid serving?", k=2)
        assert "peanuts" in best.memory.content
        assert best.memory.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
        # The hashing embedder's vectors are another space: it sees none of these.
        assert store.memory.search("peanuts", k=5) == []
    finally:
        memory.close()


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    from syncstore.errors import CapabilityError

    embedder = SentenceTransformerEmbedder(model_path=tmp_path)
    if not sentence.available():
        with pytest.raises(CapabilityError):
            embedder.embed(["x"])
        return
    with pytest.raises(CapabilityError, match="not a sentence-transformers model"):
        embedder.embed(["x"])
