"""Memory search at three sizes, each 10x the last: exact engines beside plain numpy, and the hnsw engine's recall.

    .venv/bin/python benchmarks/vector_search.py [--sizes 10000,100000,1000000] [--dims 384]
        [--data clustered|random] [--queries 50] [--cache DIR] [--sqlite-vec-up-to 100000]

For each size, on one replica of that many memories (10 agents, every memory
type, importance 1-10; replicas and hnsw files are kept in ``--cache`` so a
second run skips building them):

1. anchor: numpy's plain matrix-vector product over a float32 matrix of the
   same vectors, then ``argpartition`` for the top 10: nothing else;
2. the numpy engine through ``store.memory.search_vector`` (filters, ranking,
   the 10 records read back), float32, and float16 and int8 storage with
   their recall@10;
3. the sqlite-vec engine (only up to ``--sqlite-vec-up-to`` rows: it scans
   without SIMD);
4. the hnsw engine: build (or load) time, memory, p50/p99, and recall@10
   against the exact top 10 of the same queries (similarity ranking, no
   filters), plus a 10% agent filter.

The cases take turns query by query, so a change in the machine's load falls
on all of them alike. Data: ``clustered`` (default) draws vectors from 1,000
clusters in a 32-dimensional subspace plus noise, unit length, as text
embeddings lie (low intrinsic dimension); ``random`` draws them uniformly from
the sphere, the worst case for any graph index (every point about as far as
every other). Target at 1,000,000 x 384: hnsw p50 <= 5 ms, recall@10 >= 0.98.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import syncstore  # noqa: E402
from syncstore import schema  # noqa: E402
from syncstore.memory import Memory, Ranking  # noqa: E402

MODEL = "benchmark-vectors"
K = 10
ANCHOR = "numpy plain matmul + argpartition (anchor)"
LATENT, CLUSTERS = 32, 1_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


class Vectors:
    """Unit vectors of one kind, drawn in batches from a seeded generator."""

    def __init__(self, kind: str, dims: int, seed: int):
        self.kind, self.dims = kind, dims
        self.rng = np.random.default_rng(seed)
        shape = np.random.default_rng(7)
        self.projection = shape.standard_normal((LATENT, dims)).astype(np.float32)
        self.centers = shape.standard_normal((CLUSTERS, LATENT)).astype(np.float32)

    def draw(self, count: int) -> np.ndarray:
        if self.kind == "random":
            x = self.rng.standard_normal((count, self.dims), dtype=np.float32)
        else:
            z = self.centers[self.rng.integers(0, CLUSTERS, count)]
            z = z + 0.6 * self.rng.standard_normal((count, LATENT), dtype=np.float32)
            x = z @ self.projection
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            x += (0.25 / np.sqrt(self.dims)) * self.rng.standard_normal((count, self.dims), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_replica(path: str, rows: int, vectors: Vectors) -> float:
    start = time.perf_counter()
    with syncstore.open(path) as store:
        batch = 5_000
        for first in range(0, rows, batch):
            count = min(batch, rows - first)
            drawn = vectors.draw(count)
            store.insert_many(
                "agent_memory",
                (
                    {
                        "agent_id": f"agent-{(first + i) % 10}",
                        "memory_type": schema.MEMORY_TYPES[(first + i) % len(schema.MEMORY_TYPES)],
                        "content": f"memory {first + i}",
                        "importance": 1 + (first + i) % 10,
                        "tags": [f"t{(first + i) % 7}"],
                        "embedding": drawn[i].tobytes(),
                        "embedding_model": MODEL,
                        "embedding_dimensions": vectors.dims,
                    }
                    for i in range(count)
                ),
            )
    return time.perf_counter() - start


def interleaved(cases: dict, queries: np.ndarray) -> dict[str, list[float]]:
    for fn in cases.values():
        fn(queries[0])  # warm up
    out: dict[str, list[float]] = {name: [] for name in cases}
    for query in queries:
        for name, fn in cases.items():
            start = time.perf_counter()
            fn(query)
            out[name].append(time.perf_counter() - start)
    return out


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth) if b]))


def run_size(rows: int, dims: int, kind: str, queries: int, cache: str, sqlite_vec_up_to: int) -> dict:
    print(f"\n=== {rows:,} x {dims} ({kind}) ===", flush=True)
    path = os.path.join(cache, f"memory-{kind}-{rows}-{dims}.db")
    notes_path = path + ".bench.json"
    notes = json.load(open(notes_path)) if os.path.exists(notes_path) else {}
    if not os.path.exists(path) or notes.get("rows") != rows:
        for leftover in [n for n in os.listdir(cache) if n.startswith(os.path.basename(path))]:
            full = os.path.join(cache, leftover)
            if os.path.isdir(full):
                import shutil

                shutil.rmtree(full)
            else:
                os.remove(full)
        notes = {"rows": rows, "replica_s": build_replica(path, rows, Vectors(kind, dims, seed=rows))}
        json.dump(notes, open(notes_path, "w"))
        print(f"replica built in {notes['replica_s']:.1f} s (inserts with change capture)", flush=True)
    query_set = Vectors(kind, dims, seed=12345).draw(queries)
    result: dict = {"rows": rows}
    with syncstore.open(path) as store:
        exact = Memory(store, engine="numpy")
        start = time.perf_counter()
        index = exact.index(MODEL, dims)
        result["numpy_load_s"] = time.perf_counter() - start
        matrix = np.ascontiguousarray(index._matrix[: index.size])  # the very vectors the engine holds
        ids = list(index._ids)
        print(f"numpy index: loaded in {result['numpy_load_s']:.1f} s, matrix {index.nbytes / 2**20:.0f} MiB", flush=True)

        def plain(query):
            scores = matrix @ query
            return np.argpartition(-scores, K)[:K]

        def case(memory: Memory, **options):
            options.setdefault("ranking", Ranking.SIMILARITY)
            return lambda query: [
                h.memory.id for h in memory.search_vector(query, model=MODEL, k=K, record_access=False, **options)
            ]

        truth = []
        for query in query_set:
            scores = matrix @ query
            top = np.argpartition(-scores, K)[:K]
            truth.append([ids[i] for i in top])

        compact = {}
        for storage in ("float16", "int8"):
            memory = Memory(store, engine="numpy", storage=storage)
            start = time.perf_counter()
            memory.index(MODEL, dims)
            compact[storage] = memory
            print(f"numpy engine, {storage}: loaded in {time.perf_counter() - start:.1f} s", flush=True)

        hnsw = Memory(store, engine="hnsw")
        before = rss_bytes()
        start = time.perf_counter()
        graph = hnsw.index(MODEL, dims)
        opened = time.perf_counter() - start
        grown = rss_bytes() - before
        if graph.loaded_from_disk:
            print(f"hnsw: loaded from disk in {opened:.1f} s (built in {notes.get('hnsw_build_s', float('nan')):.0f} s by an earlier run)")
        else:
            notes["hnsw_build_s"] = graph.build_seconds
            json.dump(notes, open(notes_path, "w"))
            print(f"hnsw: built in {graph.build_seconds:.1f} s")
        result["hnsw_build_s"] = notes.get("hnsw_build_s")
        result["hnsw_open_s"] = opened
        result["hnsw_mib"] = graph.nbytes / 2**20
        print(f"hnsw: graph ~{graph.nbytes / 2**20:.0f} MiB, process grew {grown / 2**20:.0f} MiB on opening", flush=True)

        cases = {
            ANCHOR: plain,
            "numpy engine float32": case(exact),
            "numpy engine float16": case(compact["float16"]),
            "numpy engine int8": case(compact["int8"]),
            "hnsw engine": case(hnsw),
            "hnsw engine, agent filter (10%)": case(hnsw, agent_id="agent-3"),
            "numpy engine float32, default ranking": case(exact, ranking=Ranking()),
            "hnsw engine, default ranking": case(hnsw, ranking=Ranking()),
        }
        if rows <= sqlite_vec_up_to:
            sqlite_vec = Memory(store, engine="sqlite-vec")
            start = time.perf_counter()
            sqlite_vec.index(MODEL, dims)
            print(f"sqlite-vec: built in {time.perf_counter() - start:.1f} s", flush=True)
            cases["sqlite-vec engine"] = case(sqlite_vec)
        timings = interleaved(cases, query_set)
        anchor = percentiles(timings[ANCHOR])[0]
        result["cases"] = {}
        for name, samples in timings.items():
            p50, p99 = percentiles(samples)
            result["cases"][name] = (p50, p99, p50 / anchor)
        for name, fn in (("numpy engine float32", cases["numpy engine float32"]), ("numpy engine float16", cases["numpy engine float16"]),
                         ("numpy engine int8", cases["numpy engine int8"]), ("hnsw engine", cases["hnsw engine"])):
            result.setdefault("recall", {})[name] = recall([fn(q) for q in query_set], truth)
        for memory in (exact, hnsw, *compact.values()):
            memory.close()
    print(f"{'case':42} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'recall@10':>9}")
    for name, (p50, p99, ratio) in result["cases"].items():
        r = result.get("recall", {}).get(name)
        print(f"{name:42} {p50:8.2f} {p99:8.2f} {ratio:6.2f} {'' if r is None else f'{r:9.4f}'}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--data", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "syncstore-vector-bench"))
    parser.add_argument("--sqlite-vec-up-to", type=int, default=100_000)
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    results = [run_size(rows, args.dims, args.data, args.queries, args.cache, args.sqlite_vec_up_to) for rows in sizes]
    print(f"\n(total run {time.perf_counter() - started:.0f} s; cache in {args.cache})")

    print(f"\np50 ms by size ({args.dims} dims, {args.data}); x = growth over the previous size (rows grow 10x)")
    names = list(results[0]["cases"])
    header = f"{'case':42}" + "".join(f" {r['rows']:>10,}" + ("" if i == 0 else f" {'x':>5}") for i, r in enumerate(results))
    print(header)
    for name in names:
        line = f"{name:42}"
        for i, r in enumerate(results):
            p50 = r["cases"].get(name, (float("nan"),))[0]
            line += f" {p50:10.2f}"
            if i:
                before = results[i - 1]["cases"].get(name, (float("nan"),))[0]
                line += f" {p50 / before:5.1f}"
        print(line)
    for label, key in (("hnsw build s", "hnsw_build_s"), ("hnsw graph MiB", "hnsw_mib")):
        line = f"{label:42}"
        for i, r in enumerate(results):
            value = r.get(key) or float("nan")
            line += f" {value:10.1f}"
            if i:
                line += f" {value / (results[i - 1].get(key) or float('nan')):5.1f}"
        print(line)
    for name in results[0].get("recall", {}):
        print(f"{'recall@10 ' + name:42}" + "".join(f" {r['recall'][name]:10.4f}" + ("" if i == 0 else " " * 6) for i, r in enumerate(results)))

    top = results[-1]
    if top["rows"] >= 1_000_000:
        p50 = top["cases"]["hnsw engine"][0]
        got = top["recall"]["hnsw engine"]
        verdict = "met" if p50 <= 5 and got >= 0.98 else "NOT met"
        print(f"\ntarget at {top['rows']:,} x {args.dims}: hnsw p50 <= 5 ms and recall@10 >= 0.98: "
              f"p50 {p50:.2f} ms, recall {got:.4f}: {verdict}")


if __name__ == "__main__":
    main()
