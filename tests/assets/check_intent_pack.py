"""Count the distinct texts each intent of an intent pack can produce, and find cross-intent collisions.

Usage::

    python tests/assets/check_intent_pack.py recipes/intents/code_search.yaml 1500

For every template the script enumerates renderings in a jinja2 ``SandboxedEnvironment``: the cartesian
product of the values of the slots the template uses, times every combination of its inline
``[...] | random`` choices. A template with more than ``MAX_COMBOS`` combinations is sampled instead
(``MAX_COMBOS`` draws with a fixed seed), so counts are lower bounds. Texts are compared after the same
normalisation the dedupe step uses (NFKC, casefold, punctuation dropped, whitespace collapsed).

Exit codes: 0 ok; 1 an intent is under the minimum, a text is producible by two intents, or a hand-written
example of one intent is producible by another intent's templates; 2 bad input. An example reproduced by
its own intent's templates is reported as a warning (the anti-parroting check would flag it).
"""

from __future__ import annotations

import itertools
import random
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

import yaml
from jinja2 import StrictUndefined, TemplateError, meta, pass_context
from jinja2.sandbox import SandboxedEnvironment

MAX_COMBOS = 50_000
MAX_CHOICE_PATHS = 10_000
SEED = 13

_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The dedupe key: NFKC, casefold, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


class Chooser:
    """Stands in for jinja's ``random`` filter: replays a fixed choice path or draws from an RNG."""

    def __init__(self) -> None:
        self.prefix: list[int] = []
        self.path: list[int] = []
        self.sizes: list[int] = []
        self.rng: random.Random | None = None

    def reset(self, prefix: list[int] | None = None, rng: random.Random | None = None) -> None:
        self.prefix, self.path, self.sizes, self.rng = list(prefix or []), [], [], rng

    def __call__(self, seq):  # the filter
        seq = list(seq)
        i = len(self.path)
        if self.rng is not None:
            pick = self.rng.randrange(len(seq))
        else:
            pick = self.prefix[i] % len(seq) if i < len(self.prefix) else 0
        self.path.append(pick)
        self.sizes.append(len(seq))
        return seq[pick]


def choice_paths(render, chooser: Chooser) -> list[list[int]]:
    """Every path through a template's ``random`` choices (odometer over the recorded choice sizes)."""
    paths, prefix = [], []
    while len(paths) < MAX_CHOICE_PATHS:
        chooser.reset(prefix)
        render()
        path, sizes = chooser.path, chooser.sizes
        paths.append(path)
        j = next((k for k in range(len(path) - 1, -1, -1) if path[k] + 1 < sizes[k]), None)
        if j is None:
            break
        prefix = [*path[:j], path[j] + 1]
    return paths


def template_texts(env: SandboxedEnvironment, chooser: Chooser, source: str, slots: dict) -> set[str]:
    """Normalised texts one template can render (all of them, or a seeded sample of MAX_COMBOS)."""
    names = sorted(meta.find_undeclared_variables(env.parse(source)))
    missing = [n for n in names if n not in slots]
    if missing:
        raise KeyError(f"template {source!r} uses undefined slot(s) {missing}")
    template = env.from_string(source)
    values = [slots[n] for n in names]
    first = {n: v[0] for n, v in zip(names, values, strict=True)}
    paths = choice_paths(lambda: template.render(first), chooser)
    total = len(paths)
    for v in values:
        total *= len(v)
    out: set[str] = set()
    if total <= MAX_COMBOS:
        for combo in itertools.product(*values):
            ctx = dict(zip(names, combo, strict=True))
            for path in paths:
                chooser.reset(path)
                out.add(normalize(template.render(ctx)))
    else:
        rng = random.Random(f"{SEED}:{source}")
        for _ in range(MAX_COMBOS):
            ctx = {n: rng.choice(v) for n, v in zip(names, values, strict=True)}
            chooser.reset(rng=rng)
            out.add(normalize(template.render(ctx)))
    out.discard("")
    return out


def load_pack(path: Path) -> dict:
    """The pack as a dict (the ``# @package`` line is a YAML comment; strip it anyway)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# @package"):
        lines = lines[1:]
    pack = yaml.safe_load("\n".join(lines)) or {}
    if not isinstance(pack.get("intents"), dict) or not pack["intents"]:
        raise ValueError(f"{path}: no 'intents' mapping")
    return pack


def check_strings(intent: str, slots: dict, templates: list) -> None:
    """Every slot value and template must be a string (YAML 1.1 reads bare off/yes/no as booleans)."""
    for slot, values in slots.items():
        bad = [v for v in values or [] if not isinstance(v, str)]
        if not values or bad:
            raise ValueError(f"{intent}: slot {slot!r} must be a non-empty list of strings (quote {bad})")
    bad = [t for t in templates if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{intent}: templates must be strings, got {bad}")


def check(pack: dict, minimum: int) -> int:
    """Print the report and return the exit code."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    chooser = Chooser()
    # pass_context keeps jinja from constant-folding ``[...] | random`` at compile time
    env.filters["random"] = pass_context(lambda _ctx, seq: chooser(seq))
    shared = pack.get("slots") or {}
    texts: dict[str, set[str]] = {}
    for name, spec in pack["intents"].items():
        slots = {**shared, **(spec.get("slots") or {})}
        check_strings(name, slots, spec.get("templates") or [])
        texts[name] = set()
        for source in spec.get("templates") or []:
            texts[name] |= template_texts(env, chooser, source, slots)

    owners: dict[str, list[str]] = defaultdict(list)
    for name, found in texts.items():
        for text in found:
            owners[text].append(name)
    collisions = {t: o for t, o in owners.items() if len(o) > 1}

    failed = False
    print(f"{'intent':<22}{'templates':>10}{'examples':>10}{'distinct':>10}  status")
    for name, spec in pack["intents"].items():
        ok = len(texts[name]) >= minimum
        failed |= not ok
        flag = "ok" if ok else f"UNDER {minimum}"
        counts = f"{len(spec.get('templates') or []):>10}{len(spec.get('examples') or []):>10}"
        print(f"{name:<22}{counts}{len(texts[name]):>10}  {flag}")

    print(f"\ncross-intent collisions: {len(collisions)}")
    for text, who in sorted(collisions.items())[:40]:
        print(f"  {text!r}: {', '.join(who)}")
    failed |= bool(collisions)

    for name, spec in pack["intents"].items():
        for example in spec.get("examples") or []:
            who = owners.get(normalize(example), [])
            if name in who:
                print(f"warning: {name} example reproduced by its own templates: {example!r}")
            others = [w for w in who if w != name]
            if others:
                failed = True
                print(f"CONFLICT: {name} example {example!r} is producible by {', '.join(others)}")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: check_intent_pack.py PACK.yaml MIN_DISTINCT_PER_INTENT", file=sys.stderr)
        return 2
    try:
        pack, minimum = load_pack(Path(argv[1])), int(argv[2])
        return check(pack, minimum)
    except (OSError, ValueError, KeyError, TemplateError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
