"""The default summarizer for consolidation: extractive, offline, deterministic.

It writes no new prose; it picks sentences. Each memory's content is split
into sentences; near-duplicates are dropped; if more than ``max_sentences``
remain, the ones closest to the centroid of all of them (by the lexical
hashing embedder), nudged by the importance of their memory, are kept,
skipping any too similar to one already kept. The kept sentences are listed
oldest first, one per line, within ``max_chars``.

A summarizer is any ``callable(list[MemoryRecord]) -> str``; pass an LLM call
to ``consolidate(summarizer=...)`` for abstractive summaries.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from syncstore.shared.embedders.hashing import HashingEmbedder
from syncstore.memory.records import MemoryRecord

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_SPACE = re.compile(r"\s+")
_REDUNDANT = 0.85  # cosine above which a sentence repeats one already kept
_IMPORTANCE_NUDGE = 0.05


def sentences(text: str) -> list[str]:
    return [s for s in (_SPACE.sub(" ", part).strip() for part in _SENTENCE_END.split(text)) if s]


def extractive_summary(
    memories: Sequence[MemoryRecord], *, max_sentences: int = 8, max_chars: int = 2000
) -> str:
    ordered = sorted(memories, key=lambda m: (m.created_at is None, m.created_at, m.id))
    found: list[tuple[str, int]] = []  # (sentence, importance), oldest first
    seen: set[str] = set()
    for memory in ordered:
        for sentence in sentences(memory.content):
            key = sentence.lower().rstrip(".!? ")
            if key and key not in seen:
                seen.add(key)
                found.append((sentence, memory.importance))
    if not found:
        return ""
    keep = list(range(len(found)))
    if len(found) > max_sentences:
        vectors = HashingEmbedder().embed([s for s, _ in found])
        centroid = vectors.mean(axis=0)
        norm = float(np.linalg.norm(centroid))
        centrality = vectors @ (centroid / norm) if norm > 0 else np.zeros(len(found))
        score = centrality + _IMPORTANCE_NUDGE * (np.array([i for _, i in found]) - 1) / 9
        keep = []
        for position in sorted(range(len(found)), key=lambda p: (-score[p], p)):
            if all(float(vectors[position] @ vectors[other]) <= _REDUNDANT for other in keep):
                keep.append(position)
            if len(keep) == max_sentences:
                break
        keep.sort()
    lines: list[str] = []
    used = 0
    for position in keep:
        line = f"- {found[position][0]}"
        if used + len(line) + 1 > max_chars:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)
