"""Language-identification benchmark: our detector next to plain langdetect.

Owns the figures behind `nlu.language`: accuracy on single words, word pairs and sentences,
time per text (p50/p99) and the resident memory the detector adds. The data
(`../shared/langid` next to the repository, or the directory given as the first argument) is
test data: nothing here feeds back into the model. `--confusion` also prints, per set, which
language our detector chose for each expected language (to see the kinds of errors, not to tune).

Plain langdetect (restricted to the same languages, seed 0) samples at random and is slow, so
it runs on every 4th line of each file; our detector runs on every line. Both are timed per
text, on one thread: wall clock (p50, p99) and this thread's CPU time (p99 cpu), which other
processes on a busy machine cannot inflate.

    .venv/bin/python bench/langid.py [--confusion] [DATA_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

LANGUAGES = ("en", "fr", "ar", "sw", "es", "pt")
SETS = (("single-words", "single words"), ("word-pairs", "word pairs"), ("sentences", "sentences"))
GOALS = {"single-words": 88.0, "word-pairs": 96.0, "sentences": 99.6}
LANGDETECT_EVERY = 4
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "langid"


def rss_mb() -> float:
    """Current resident set size of this process (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Result:
    correct: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)  # (expected, chosen)

    def accuracy(self, language: str | None = None) -> float:
        keys = [language] if language else list(self.total)
        total = sum(self.total[k] for k in keys)
        return 100.0 * sum(self.correct[k] for k in keys) / total if total else 0.0


def run(
    detect: Callable[[str], str], texts: dict[str, list[str]], every: int = 1
) -> Result:
    result = Result()
    for language, lines in texts.items():
        sample = lines[::every]
        correct = 0
        for text in sample:
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            guess = detect(text)
            result.cpu_ms.append((time.thread_time_ns() - start_cpu) / 1e6)
            result.times_ms.append((time.perf_counter_ns() - start) / 1e6)
            correct += guess == language
            result.confusion[language, guess] += 1
        result.correct[language] = correct
        result.total[language] = len(sample)
    return result


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_confusion(label: str, result: Result) -> None:
    chosen = [*LANGUAGES, *sorted({g for _, g in result.confusion} - set(LANGUAGES))]
    print(f"\n{label}: rows expected, columns chosen (texts)")
    print(f"| {'':<8}| " + " | ".join(f"{c:>5}" for c in chosen) + " |")
    print("|" + "-" * 9 + "|" + "|".join("-" * 7 for _ in chosen) + "|")
    for language in LANGUAGES:
        counts = " | ".join(f"{result.confusion[language, c]:>5}" for c in chosen)
        print(f"| {language:<8}| {counts} |")


def load(data: Path, folder: str) -> dict[str, list[str]]:
    texts = {}
    for language in LANGUAGES:
        # One text per line: split on "\n" only (str.splitlines would also split two French
        # sentences at the C1 control characters they contain).
        lines = (data / folder / f"{language}.txt").read_text(encoding="utf-8").split("\n")
        texts[language] = [line.strip() for line in lines if line.strip()]
    return texts


def plain_langdetect() -> Callable[[str], str]:
    from langdetect.detector_factory import DetectorFactory
    from langdetect.lang_detect_exception import LangDetectException

    factory = DetectorFactory()
    factory.seed = 0
    profiles = resources.files("langdetect") / "profiles"
    factory.load_json_profile(
        [json.dumps(json.loads((profiles / code).read_text(encoding="utf-8"))) for code in LANGUAGES]
    )

    def detect(text: str) -> str:
        detector = factory.create()
        detector.append(text)
        try:
            return str(detector.detect())
        except LangDetectException:
            return "?"

    return detect


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--confusion", action="store_true", help="print our detector's confusion matrix per set"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    before = rss_mb()
    started = time.perf_counter()
    from nlu.language import LanguageDetector

    ours = LanguageDetector(LANGUAGES, default="en")
    load_s = time.perf_counter() - started
    after_load = rss_mb()

    detectors: list[tuple[str, Callable[[str], str], int]] = [
        ("ours", lambda text: ours.detect(text).language, 1),
    ]
    langdetect_before = rss_mb()
    detectors.append(("langdetect", plain_langdetect(), LANGDETECT_EVERY))
    langdetect_rss = rss_mb() - langdetect_before

    results: dict[tuple[str, str], Result] = {}
    for folder, _ in SETS:
        texts = load(args.data, folder)
        for name, detect, every in detectors:
            results[name, folder] = run(detect, texts, every)
    after_run = rss_mb()

    print(f"data: {args.data}; languages: {' '.join(LANGUAGES)}")
    print(f"langdetect (plain, restricted, seed 0) runs on every {LANGDETECT_EVERY}th line\n")
    header = f"| {'detector':<12}| {'set':<13}| {'accuracy':>8} | {'goal':>6} "
    header += f"| {'p50 ms':>7} | {'p99 ms':>7} | {'p99 cpu':>7} | "
    header += " | ".join(f"{c:>5}" for c in LANGUAGES)
    print(header + " |")
    print("|" + "|".join("-" * len(part) for part in (header + " |").split("|")[1:-1]) + "|")
    for name, _, _ in detectors:
        for folder, label in SETS:
            r = results[name, folder]
            row = f"| {name:<12}| {label:<13}| {r.accuracy():7.1f}% | {GOALS[folder]:5.1f}% "
            row += f"| {percentile(r.times_ms, 0.5):7.3f} | {percentile(r.times_ms, 0.99):7.3f} "
            row += f"| {percentile(r.cpu_ms, 0.99):7.3f} | "
            row += " | ".join(f"{r.accuracy(c):5.1f}" for c in LANGUAGES)
            print(row + " |")
    wall = [t for folder, _ in SETS for t in results["ours", folder].times_ms]
    cpu = [t for folder, _ in SETS for t in results["ours", folder].cpu_ms]
    print(
        f"\nours, all texts: wall p50 {statistics.median(wall):.3f} ms, "
        f"p99 {percentile(wall, 0.99):.3f} ms, max {max(wall):.3f} ms; "
        f"cpu p99 {percentile(cpu, 0.99):.3f} ms, max {max(cpu):.3f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"RSS: {before:.1f} MB before; ours adds {after_load - before:.1f} MB loaded "
        f"(load {load_s:.2f} s), {after_run - before:.1f} MB after the run with its word "
        f"cache warm (incl. langdetect's {langdetect_rss:.1f} MB); process {after_run:.1f} MB"
    )
    if args.confusion:
        for folder, label in SETS:
            print_confusion(f"ours, {label}", results["ours", folder])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
