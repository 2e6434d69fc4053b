"""The default embedder: feature hashing of words and character n-grams.

It needs no model, no download and no network, is deterministic across
processes and machines, and embeds thousands of short texts per second.

It is **lexical, not semantic**: two texts are similar when they share words
or pieces of words ("deploy" and "deployment" share n-grams), not when they
mean the same thing ("car" and "automobile" are unrelated to it). Use it for
recall by wording, offline; use a sentence-embedding model (the
``embeddings`` extra) or an HTTP embedder for recall by meaning.

How a text becomes a vector: the text is NFKC-normalised and lower-cased and
split into words. Each word that is not a common English stop word is a
feature (weight 1), each pair of neighbouring words is a feature (weight
``bigram_weight``), and each character n-gram of each word padded with
boundary marks (``<dep``, ``epl`` ... ``nt>``) is a feature, weighted so that
a word's n-grams together weigh ``ngram_weight`` (in length: each gets
``ngram_weight / sqrt(count)``), as much as the word itself by default, so
"deploy" and "deployment" are close. Each feature is hashed with CRC-32 to a
position and a sign; weights are added (with a sublinear ``1 + log(weight)``
for repeated words) and the vector is scaled to unit length.
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections import Counter
from typing import Sequence

import numpy as np

from syncstore.shared.embedders.base import Embedder, normalize_rows

_WORD = re.compile(r"\w+", re.UNICODE)
_MODEL = re.compile(r"^syncstore-hashing-v1:d(\d+):c(\d+)-(\d+):n([0-9.e+-]+):b([0-9.e+-]+)$")

# Frequent function words carry no topic; dropping them keeps "the" from
# making every English text similar to every other.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves""".split()
)


class HashingEmbedder(Embedder):
    def __init__(
        self,
        *,
        dimensions: int = 512,
        ngram_range: tuple[int, int] = (3, 5),
        ngram_weight: float = 1.0,
        bigram_weight: float = 0.5,
    ):
        low, high = ngram_range
        if dimensions < 8 or not 1 <= low <= high:
            raise ValueError("dimensions must be at least 8 and ngram_range (low, high) with 1 <= low <= high")
        self.dimensions = dimensions
        self.ngram_range = (low, high)
        self.ngram_weight = float(ngram_weight)
        self.bigram_weight = float(bigram_weight)
        # Every setting that changes the vectors is in the name, so vectors made
        # with other settings are never compared with these.
        self.model = f"syncstore-hashing-v1:d{dimensions}:c{low}-{high}:n{ngram_weight:g}:b{bigram_weight:g}"

    @classmethod
    def from_model(cls, model: str) -> HashingEmbedder | None:
        """The embedder a model name was made by, or None for another kind of name:
        lets a server embed a query for rows that name this model."""
        found = _MODEL.match(model)
        if found is None:
            return None
        dimensions, low, high, ngram, bigram = found.groups()
        embedder = cls(
            dimensions=int(dimensions), ngram_range=(int(low), int(high)), ngram_weight=float(ngram), bigram_weight=float(bigram)
        )
        return embedder if embedder.model == model else None

    def features(self, text: str) -> Counter[str]:
        """The weighted features of one text (useful to see why two texts match)."""
        words = [w for w in _WORD.findall(unicodedata.normalize("NFKC", text).lower()) if w not in STOP_WORDS]
        found: Counter[str] = Counter()
        low, high = self.ngram_range
        for word in words:
            found["w:" + word] += 1.0
            padded = f"<{word}>"
            grams = [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]
            if grams and self.ngram_weight:
                share = self.ngram_weight / math.sqrt(len(grams))
                for gram in grams:
                    found["c:" + gram] += share
        if self.bigram_weight:
            for first, second in zip(words, words[1:]):
                found[f"b:{first} {second}"] += self.bigram_weight
        return found

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts; use embed_one for one text")
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        size = self.dimensions
        for row, text in enumerate(texts):
            vector = out[row]
            for feature, weight in self.features(text).items():
                digest = zlib.crc32(feature.encode())
                sign = 1.0 if digest & 0x80000000 else -1.0
                vector[digest % size] += sign * (1.0 + math.log(weight) if weight > 1.0 else weight)
        return normalize_rows(out)
