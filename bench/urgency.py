"""Urgency benchmark: how well `bot.urgency.assess` tags the labelled tips in bench/data/urgency.

Goal: critical recall >= 0.95 with critical precision >= 0.85. Missing a life-threatening tip
costs more than a false alarm, so recall comes first, but a queue where everything is critical
is no queue.

Each data line: {"text": ..., "urgency": "critical|high|normal|low", "danger_now": null|bool}.
The language is the file's name, as the conversation would know it.

    .venv/bin/python bench/urgency.py [--errors]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from bot.urgency import UrgencyLexicon, assess
from storage.models import Urgency

DATA_DIR = Path(__file__).resolve().parent / "data" / "urgency"
LEVELS = [level.value for level in Urgency]
GOAL_RECALL = 0.95
GOAL_PRECISION = 0.85


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="print every misclassified tip")
    args = parser.parse_args(argv)

    lexicon = UrgencyLexicon.load()
    rows: list[tuple[str, str, str, str, tuple[str, ...]]] = []  # lang, text, gold, got, why
    started = time.perf_counter()
    for path in sorted(DATA_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            result = assess(text=item["text"], danger_now=item["danger_now"],
                            language=path.stem, lexicon=lexicon)
            rows.append((path.stem, item["text"], item["urgency"], result.urgency.value,
                         result.reasons))
    elapsed = time.perf_counter() - started

    confusion = Counter((gold, got) for _, _, gold, got, _ in rows)
    languages = sorted({lang for lang, *_ in rows})
    print(f"{len(rows)} tips in {len(languages)} languages ({', '.join(languages)}); "
          f"{1000 * elapsed / max(len(rows), 1):.2f} ms per tip\n")

    print(f"{'level':<10}{'precision':>10}{'recall':>8}{'support':>9}")
    for level in LEVELS:
        true_positive = confusion[(level, level)]
        predicted = sum(confusion[(gold, level)] for gold in LEVELS)
        actual = sum(confusion[(level, got)] for got in LEVELS)
        print(f"{level:<10}{_ratio(true_positive, predicted):>10.2f}"
              f"{_ratio(true_positive, actual):>8.2f}{actual:>9}")
    accuracy = _ratio(sum(confusion[(level, level)] for level in LEVELS), len(rows))
    print(f"{'accuracy':<10}{accuracy:>18.2f}{len(rows):>9}\n")

    print("confusion (rows: labelled, columns: assessed)")
    print(f"{'':<10}" + "".join(f"{level:>10}" for level in LEVELS))
    for gold in LEVELS:
        print(f"{gold:<10}" + "".join(f"{confusion[(gold, got)]:>10}" for got in LEVELS))

    print("\ncritical per language")
    print(f"{'language':<10}{'recall':>8}{'precision':>11}{'support':>9}")
    for lang in languages:
        mine = [(gold, got) for lg, _, gold, got, _ in rows if lg == lang]
        hit = sum(1 for gold, got in mine if gold == got == "critical")
        actual = sum(1 for gold, _ in mine if gold == "critical")
        predicted = sum(1 for _, got in mine if got == "critical")
        print(f"{lang:<10}{_ratio(hit, actual):>8.2f}{_ratio(hit, predicted):>11.2f}{actual:>9}")

    hit = confusion[("critical", "critical")]
    recall = _ratio(hit, sum(confusion[("critical", got)] for got in LEVELS))
    precision = _ratio(hit, sum(confusion[(gold, "critical")] for gold in LEVELS))
    met = recall >= GOAL_RECALL and precision >= GOAL_PRECISION
    print(f"\ngoal: critical recall >= {GOAL_RECALL} with critical precision >= {GOAL_PRECISION}"
          f" -> recall {recall:.2f}, precision {precision:.2f}: {'MET' if met else 'NOT MET'}")

    if args.errors:
        print("\nmisclassified (language, labelled -> assessed, text, reasons)")
        for lang, text, gold, got, reasons in rows:
            if gold != got:
                print(f"  {lang} {gold} -> {got}: {text}\n      {'; '.join(reasons)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
