"""LangGraph's own checkpointer conformance suite (langgraph-checkpoint-conformance)
against SyncstoreSaver: every base capability and the extended ones
(delete_for_runs, copy_thread, prune) must be detected and pass."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import syncstore

conformance = pytest.importorskip("langgraph.checkpoint.conformance")
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES  # noqa: E402

from syncstore.integrations.langgraph import SyncstoreSaver  # noqa: E402

from .conftest import CONFORMANCE_REPORTS  # noqa: E402


class SyncMethodsSaver(SyncstoreSaver):
    """The suite calls the async methods; this one answers them with the
    synchronous methods (in a thread), so those are held to the suite too."""

    async def aget_tuple(self, config: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: Any, **options: Any) -> Any:
        for item in await asyncio.to_thread(lambda: list(self.list(config, **options))):
            yield item

    async def aput(self, *args: Any) -> Any:
        return await asyncio.to_thread(self.put, *args)

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Any) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source: str, target: str) -> None:
        await asyncio.to_thread(self.copy_thread, source, target)

    async def aprune(self, thread_ids: Any, *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


def run_suite(tmp_path, saver_class: type[SyncstoreSaver], name: str) -> Any:
    made = iter(range(100))

    @conformance.checkpointer_test(name=name)
    async def factory():
        # A fresh replica file per capability, as the suite expects a fresh saver.
        store = syncstore.open(str(tmp_path / f"replica-{next(made)}.db"))
        try:
            yield saver_class(store)
        finally:
            store.close()

    report = asyncio.run(conformance.validate(factory))
    CONFORMANCE_REPORTS.append(report)
    return report


def assert_every_capability_passed(report: Any) -> None:
    failures = {name: result.failures for name, result in report.results.items() if result.failures}
    assert not failures, failures
    for capability in ALL_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, f"{capability.value} is not implemented"
        assert result.passed is True and result.tests_passed > 0 and result.tests_failed == 0, capability.value
    assert report.passed_all_base() and report.conformance_level() == "FULL"


def test_the_async_methods_pass_every_capability_of_the_conformance_suite(tmp_path):
    assert_every_capability_passed(run_suite(tmp_path, SyncstoreSaver, "SyncstoreSaver"))


def test_the_sync_methods_pass_every_capability_of_the_conformance_suite(tmp_path):
    assert_every_capability_passed(run_suite(tmp_path, SyncMethodsSaver, "SyncstoreSaver (sync methods)"))
