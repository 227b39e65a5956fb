"""Built-in task ``paraphrased``: two steps, the second in parallel.

1. Ask for about half of ``n`` queries (as the ``queries`` task does).
2. For each of them at once, ask for a rewrite in another voice; keep the originals and the rewrites.

It shows the three shapes a task can take: one request, sequential steps, parallel requests.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from framework.llm.records import GenerationRecord, Queries, clean_texts
from framework.llm.requests import TaskError, request
from framework.registry import llm_tasks

REWRITE = (
    "Write 1 queries that mean exactly the same as the query below but sound like a different person typed it "
    '(other words, other length). Query: "{query}". Answer with a JSON object {{"queries": ["..."]}}.'
)


@llm_tasks.register("paraphrased")
def paraphrased(record: GenerationRecord) -> Generator[Any, Any, list[str]]:
    """Ask for ``ceil(n / 2)`` queries, then rewrite each in parallel; originals plus rewrites."""
    first = yield request(record.prompt, system=record.system, schema=Queries, step="queries")
    originals = clean_texts(first.parsed.queries, -(-record.n // 2))
    if not originals:
        raise TaskError("no_queries", "the first answer held no non-empty query")
    rewrites = yield [
        request(REWRITE.format(query=text), system=record.system, schema=Queries, step=f"rewrite {i}")
        for i, text in enumerate(originals)
    ]
    texts = originals + [text for answer in rewrites for text in clean_texts(answer.parsed.queries, 1)]
    return clean_texts(texts, record.n)
