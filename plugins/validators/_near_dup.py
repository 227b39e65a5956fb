"""Exact token-set Jaccard similarity join, incremental in input order (used by the ``quality`` layer).

Rows arrive one by one; each is compared with the rows kept so far in its scope. Identical token sets
are found with a dict. Other pairs go through prefix filtering: tokens are ordered by global rarity,
and two sets with Jaccard >= t must share a token within their prefixes of length
``|A| - ceil(t*|A|) + 1`` (the rarest token of their overlap lies in both). Postings are grouped by set
size, so only sizes with ``t*|B| <= |A| <= |B|/t`` are probed, and candidates are verified against
the smallest overlap that reaches the threshold for their pair of sizes.

Every bound is computed with the same float expression as the final check ``inter / union >= t``
(float division is monotone), so the join returns exactly what a brute-force comparison would.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Scope:
    """Kept rows of one scope: token set -> entry; token -> (set size, position in prefix) -> entries."""

    exact: dict[frozenset[str], int] = field(default_factory=dict)
    postings: dict[str, dict[tuple[int, int], list[int]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _SizePlan:
    """Bounds for probing with a set of one size."""

    prefix_len: int
    needed: list[int]  # smallest overlap reaching the threshold, per other size; > other: impossible
    min_other: int
    max_other: int


@dataclass(frozen=True)
class Match:
    """The kept row a new row duplicates."""

    kept_id: str
    jaccard: float


class NearDupIndex:
    """Keeps the first row of every group of near-duplicates, in the order rows are offered.

    Args:
        threshold: Jaccard similarity at or above which two rows are near-duplicates (0 < t <= 1).
        corpus: Token lists of every row that may be offered; only used to rank tokens by rarity,
            which keeps prefixes selective. Tokens missing here are still handled correctly.
    """

    def __init__(self, threshold: float, corpus: Iterable[Iterable[str]]) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        frequency = Counter(token for toks in corpus for token in set(toks))
        ranked = sorted(frequency, key=lambda token: (frequency[token], token))
        self._rank = {token: position for position, token in enumerate(ranked)}
        self._scopes: dict[Hashable, _Scope] = defaultdict(_Scope)
        self._ids: list[str] = []
        self._sets: list[frozenset[str]] = []
        self._plans: dict[int, _SizePlan] = {}

    def _plan(self, size: int) -> _SizePlan:
        """Prefix length, overlap needed per other size, and the range of sizes worth probing."""
        if size not in self._plans:
            t = self.threshold
            own = next(o for o in range(size + 1) if o / size >= t)
            needed = [
                next((o for o in range(min(size, other) + 1) if o / (size + other - o) >= t), other + 1)
                for other in range(int(size / t) + 2)
            ]
            feasible = [other for other, need in enumerate(needed) if need <= other]
            self._plans[size] = _SizePlan(size - own + 1, needed, feasible[0], feasible[-1])
        return self._plans[size]

    def _prefix(self, token_set: frozenset[str], length: int) -> list[str]:
        """The ``length`` rarest tokens (tokens unseen so far rank after all known ones, as they arrive)."""
        rank = self._rank
        for token in token_set:
            if token not in rank:
                rank[token] = len(rank)
        return sorted(token_set, key=rank.__getitem__)[:length]

    def _best(self, scope: _Scope, token_set: frozenset[str], prefix: list[str], plan: _SizePlan) -> Match | None:
        """The kept row with the highest Jaccard >= threshold (earliest on ties), if any.

        A posting group holds kept sets of size ``m`` with the token at position ``j``; met at position
        ``i`` of the probe, at most ``min(n - i, m - j)`` tokens can be shared from there on. A true match
        is reached through its rarest shared token, where that bound holds, so groups below the overlap
        needed for ``(n, m)`` are skipped.
        """
        n, hi, needed, sets = len(token_set), plan.max_other, plan.needed, self._sets
        postings = scope.postings
        candidates = {
            e
            for i, token in enumerate(prefix)
            if token in postings
            for (m, j), entries in postings[token].items()
            if m <= hi and n - i >= needed[m] <= m - j
            for e in entries
        }
        hits = [e for e in candidates if len(token_set & sets[e]) >= needed[len(sets[e])]]
        if not hits:
            return None
        jaccard, negated = max((len(token_set & sets[e]) / len(token_set | sets[e]), -e) for e in hits)
        return Match(self._ids[-negated], jaccard)

    def offer(self, row_id: str, tokens: Iterable[str], scope_key: Hashable = None) -> Match | None:
        """Return the kept row this one duplicates, or ``None`` after keeping it.

        Rows without tokens are neither matched nor kept (their Jaccard is undefined).
        """
        token_set = frozenset(tokens)
        if not token_set:
            return None
        scope = self._scopes[scope_key]
        if (entry := scope.exact.get(token_set)) is not None:
            return Match(self._ids[entry], 1.0)
        plan = self._plan(len(token_set))
        prefix = self._prefix(token_set, plan.prefix_len)
        if (match := self._best(scope, token_set, prefix, plan)) is not None:
            return match
        entry = len(self._ids)
        self._ids.append(row_id)
        self._sets.append(token_set)
        scope.exact[token_set] = entry
        for position, token in enumerate(prefix):
            scope.postings.setdefault(token, {}).setdefault((len(token_set), position), []).append(entry)
        return None
