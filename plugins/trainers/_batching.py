"""Tokenised examples, length-grouped batches and dynamic padding for encoder fine-tuning."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Encoded:
    """Token ids of every example (unpadded) and their label indices."""

    ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer: object, texts: Sequence[str], labels: Sequence[int], max_length: int) -> Encoded:
    """Tokenise once, truncating to ``max_length``; padding happens per batch."""
    if not texts:
        return Encoded([], [])
    batch = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)  # type: ignore[operator]
    return Encoded(list(batch["input_ids"]), list(labels))


def length_grouped_batches(data: Encoded, batch_size: int, rng: random.Random, group: bool) -> list[list[int]]:
    """Shuffled batches of indices; with ``group``, similar lengths share a batch (less padding).

    Indices are shuffled, cut into mega-batches of 50 batches, sorted by length inside each, cut into
    batches, and the batch order is shuffled again, so batches stay random but padding stays small.
    """
    order = list(range(len(data)))
    rng.shuffle(order)
    if not group:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mega = batch_size * 50
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: len(data.ids[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sequential_batches(data: Encoded, batch_size: int) -> Iterator[list[int]]:
    """Batches in length order, for evaluation (order does not matter, padding does)."""
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def collate(data: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its longest example."""
    width = max(len(data.ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        ids = data.ids[i]
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
    labels = torch.tensor([data.labels[i] for i in indices], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
