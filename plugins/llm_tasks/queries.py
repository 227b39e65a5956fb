"""Built-in task ``queries``: one request per record asking for ``n`` queries as JSON."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from framework.llm.records import GenerationRecord, Queries, clean_texts
from framework.llm.requests import TaskError, request
from framework.registry import llm_tasks


@llm_tasks.register("queries")
def queries(record: GenerationRecord) -> Generator[Any, Any, list[str]]:
    """Ask once for ``n`` queries (JSON ``{"queries": [...]}``); keep the distinct non-empty ones."""
    answer = yield request(record.prompt, system=record.system, schema=Queries, step="queries")
    texts = clean_texts(answer.parsed.queries, record.n)
    if not texts:
        raise TaskError("no_queries", "the answer held no non-empty query")
    return texts
