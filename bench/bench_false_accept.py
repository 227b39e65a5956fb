"""How often a bundle accepts text from outside its domain (run by hand).

    .venv/bin/python bench/bench_false_accept.py outputs/runs/code_search/<time>/bundle
    .venv/bin/python bench/bench_false_accept.py BUNDLE_A BUNDLE_B      # two builds side by side, one process
    .venv/bin/python bench/bench_false_accept.py BUNDLE --texts ../shared/data/snips/test.csv other.csv
    .venv/bin/python bench/bench_false_accept.py A B --in-domain outputs/cache/split/<key>/test.jsonl

Routes every ``text`` of each CSV (default: SNIPS's test and train queries and BANKING77's test queries from
``../shared/data``, none of them about code) through the bundle and prints, per file, the share accepted as an
in-scope intent: as the bundle decides (confidence thresholds and the out-of-distribution score together), and
as each signal alone would. The most frequent accepted intents and a few accepted texts follow. Use texts that
did not build the bundle's negatives, or the figure measures memory, not generalisation.

``--in-domain`` adds the other half of the trade: on a labelled JSONL file (``text`` and ``intent``, for
instance a run's test split), each bundle's top-1 accuracy on the rows of its in-scope intents, the share it
accepts and the accuracy of what it accepts. Give bundles whose training did not see those rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
from collections import Counter
from pathlib import Path

from framework.runtime import Router

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_TEXTS = [DATA / "snips" / "test.csv", DATA / "snips" / "train.csv", DATA / "banking77" / "test.csv"]


def read_texts(path: Path) -> list[str]:
    """The ``text`` column of a CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def pct(count: int, total: int) -> str:
    return f"{100 * count / total:.2f}% ({count})" if total else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", type=Path, nargs="+", help="bundle directories, measured one after another")
    parser.add_argument("--texts", type=Path, nargs="+", default=DEFAULT_TEXTS, help="CSV files with a text column")
    parser.add_argument("--show", type=int, default=5, help="accepted texts to print per file")
    parser.add_argument("--in-domain", type=Path, help="labelled JSONL rows (text, intent) of the in-scope domain")
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs")
    texts = {path: read_texts(path) for path in args.texts}
    labelled = read_labelled(args.in_domain) if args.in_domain else []
    for bundle in args.bundles:
        router = Router.load(bundle)
        measure(router, bundle, texts, args.show)
        if labelled:
            measure_in_domain(router, args.in_domain, labelled)


def read_labelled(path: Path) -> list[tuple[str, str]]:
    """(text, intent) pairs of a JSONL file."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [(row["text"], row["intent"]) for row in rows]


def measure_in_domain(router: Router, path: Path, labelled: list[tuple[str, str]]) -> None:
    """Print top-1 accuracy, accepted share and accepted accuracy on the in-scope labelled rows."""
    rows = [(text, intent) for text, intent in labelled if intent != router.fallback_intent]
    results = router.predict([text for text, _ in rows])
    right = sum(result.predicted == intent for result, (_, intent) in zip(results, rows, strict=True))
    accepted = [(result, intent) for result, (_, intent) in zip(results, rows, strict=True) if result.accepted]
    accepted_right = sum(result.intent == intent for result, intent in accepted)
    print(
        f"in-domain {path.name}: {len(rows)} in-scope rows, top-1 accuracy {pct(right, len(rows))}, "
        f"accepted {pct(len(accepted), len(rows))}, accuracy of accepted {pct(accepted_right, len(accepted))}"
    )


def measure(router: Router, bundle: Path, texts: dict[Path, list[str]], show: int) -> None:
    """Print one bundle's accepted shares per file, then what it accepted."""
    method = router.ood.method if router.ood else "none"
    print(f"\nbundle {bundle} ({router.info.manifest.recipe}), out-of-distribution score: {method}")
    print(f"{'file':<28} {'texts':>6} {'accepted':>15} {'confidence alone':>17} {'OOD score alone':>16}")
    details = []
    for path, batch in texts.items():
        results = router.predict(batch)
        routable = [r for r in results if r.predicted is not None and r.predicted != router.fallback_intent]
        accepted = [r for r in results if r.accepted]
        by_confidence = sum("confidence" not in r.abstained_by for r in routable)
        by_ood = sum("out_of_distribution" not in r.abstained_by for r in routable) if router.ood else len(routable)
        name = f"{path.parent.name}/{path.name}"
        print(
            f"{name:<28} {len(batch):>6} {pct(len(accepted), len(batch)):>15} "
            f"{pct(by_confidence, len(batch)):>17} {pct(by_ood, len(batch)):>16}"
        )
        details.append((name, accepted))
    for name, accepted in details:
        if accepted:
            top = ", ".join(f"{intent} {n}" for intent, n in Counter(r.intent for r in accepted).most_common(4))
            print(f"{name}: accepted as {top}")
            for result in accepted[:show]:
                print(f"  {result.intent} {result.confidence:.3f} OOD {result.ood_score}: {result.text!r}")


if __name__ == "__main__":
    main()
