"""Small, meaning-preserving noise for synthetic rows: typos, casing, punctuation, dropped and swapped words.

Every op is a pure function ``op(text, rng, protected) -> str | None``: it returns the changed text, or
``None`` when it cannot apply (a one-word text, no eligible word). ``protected`` holds the casefolded
cores of words that came from slot values (see ``protected_words``); typo, drop and swap never touch
them, so the values that carry the meaning survive. All randomness comes from ``rng``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence

AugmentOp = Callable[[str, random.Random, frozenset[str]], str | None]
OP_NAMES = ("typo", "case", "punct", "drop", "swap")
_TRAILING = "?.!"
_PARTS = re.compile(r"^(\W*)(.*?)(\W*)$", flags=re.DOTALL)


def split_word(word: str) -> tuple[str, str, str]:
    """Split a token into (leading punctuation, core, trailing punctuation)."""
    match = _PARTS.match(word)
    assert match is not None  # the pattern matches every string
    return match.group(1), match.group(2), match.group(3)


def protected_words(values: Iterable[str]) -> frozenset[str]:
    """Casefolded word cores of the given slot values."""
    cores = (split_word(word)[1].casefold() for value in values for word in value.split())
    return frozenset(core for core in cores if core)


def is_protected(word: str, protected: frozenset[str]) -> bool:
    """Whether a token of the text came from a slot value."""
    core = split_word(word)[1].casefold()
    return bool(core) and core in protected


def typo(text: str, rng: random.Random, protected: frozenset[str]) -> str | None:
    """Swap two adjacent letters, drop a letter or double one, inside one unprotected word of 4+ letters.

    The first letter of the word is kept, as in most real typos.
    """
    words = text.split()
    eligible = [
        i
        for i, word in enumerate(words)
        if not is_protected(word, protected) and len(core := split_word(word)[1]) >= 4 and core.isalpha()
    ]
    if not eligible:
        return None
    index = rng.choice(eligible)
    lead, core, tail = split_word(words[index])
    swappable = [j for j in range(1, len(core) - 1) if core[j] != core[j + 1]]
    kinds = ["drop", "double"] + (["swap"] if swappable else [])
    kind = rng.choice(kinds)
    if kind == "swap":
        j = rng.choice(swappable)
        core = core[:j] + core[j + 1] + core[j] + core[j + 2 :]
    elif kind == "drop":
        j = rng.randrange(1, len(core))
        core = core[:j] + core[j + 1 :]
    else:
        j = rng.randrange(1, len(core))
        core = core[:j] + core[j] + core[j:]
    words[index] = lead + core + tail
    return " ".join(words)


def _title(text: str) -> str:
    return " ".join(word[:1].upper() + word[1:] for word in text.split())


def case(text: str, rng: random.Random, protected: frozenset[str]) -> str | None:
    """Re-case the text: lower, UPPER, Title or first letter lower (only variants that change it)."""
    variants = [text.lower(), text.upper(), _title(text), text[:1].lower() + text[1:]]
    changed = list(dict.fromkeys(v for v in variants if v != text))
    return rng.choice(changed) if changed else None


def punct(text: str, rng: random.Random, protected: frozenset[str]) -> str | None:
    """Add or remove a trailing '?', '.' or '!', or remove a comma after an unprotected word."""
    candidates: list[str] = []
    if text and text[-1] in _TRAILING:
        stripped = text.rstrip(_TRAILING).rstrip()
        if stripped:
            candidates.append(stripped)
    elif text:
        candidates.append(text + rng.choice(_TRAILING))
    words = text.split()
    for i, word in enumerate(words):
        if word.endswith(",") and not is_protected(word, protected):
            candidates.append(" ".join([*words[:i], word[:-1], *words[i + 1 :]]))
    candidates = [c for c in candidates if c.strip()]
    return rng.choice(candidates) if candidates else None


def drop(text: str, rng: random.Random, protected: frozenset[str]) -> str | None:
    """Drop one unprotected word, never leaving fewer than two words; trailing punctuation moves left."""
    words = text.split()
    if len(words) < 3:
        return None
    eligible = [i for i, word in enumerate(words) if not is_protected(word, protected)]
    if not eligible:
        return None
    index = rng.choice(eligible)
    removed = words.pop(index)
    tail = split_word(removed)[2]
    if index == len(words) and tail and not words[-1].endswith(tail):
        words[-1] += tail
    return " ".join(words)


def swap(text: str, rng: random.Random, protected: frozenset[str]) -> str | None:
    """Swap two adjacent unprotected words, keeping punctuation where it was."""
    words = text.split()
    parts = [split_word(word) for word in words]
    eligible = [
        i
        for i in range(len(words) - 1)
        if parts[i][1]
        and parts[i + 1][1]
        and parts[i][1].casefold() != parts[i + 1][1].casefold()
        and not is_protected(words[i], protected)
        and not is_protected(words[i + 1], protected)
    ]
    if not eligible:
        return None
    i = rng.choice(eligible)
    (lead_a, core_a, tail_a), (lead_b, core_b, tail_b) = parts[i], parts[i + 1]
    words[i], words[i + 1] = lead_a + core_b + tail_a, lead_b + core_a + tail_b
    return " ".join(words)


OPS: dict[str, AugmentOp] = {"typo": typo, "case": case, "punct": punct, "drop": drop, "swap": swap}


def augment(
    text: str, rng: random.Random, ops: Sequence[str], max_ops: int, protected: frozenset[str]
) -> tuple[str, list[str]]:
    """Apply 1..max_ops distinct ops drawn from ``ops``; return the text and the ops that applied.

    Raises:
        ValueError: ``ops`` is empty or names an unknown op (a programming error: params validate it).
    """
    unknown = [name for name in ops if name not in OPS]
    if not ops or unknown:
        raise ValueError(f"augment needs ops from {OP_NAMES}, got {list(ops)}")
    names = list(dict.fromkeys(ops))
    chosen = rng.sample(names, rng.randint(1, min(max_ops, len(names))))
    applied: list[str] = []
    for name in chosen:
        changed = OPS[name](text, rng, protected)
        if changed is not None and changed != text:
            text, applied = changed, [*applied, name]
    return text, applied
