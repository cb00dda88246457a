"""Per-language intent F1 by k-fold cross-validation of the real NLU pipeline.

    .venv/bin/python bench/nlu_f1.py [--folds 5] [--repeats 1] [--confusions] [--config FILE]

Builds the project for the configured languages, splits every language's examples into k
stratified folds (by language and intent, fixed seed), trains the NLU part of our pipeline on
k-1 folds (all languages together, as in production: one multilingual model) and classifies the
held-out fold. Prints macro F1 per language and per intent. Goal: >= 0.90 in every language.
Which fold an example lands in moves a language's figure by up to ~0.7 points, so `--repeats N`
runs N different shuffles (seeds 7, 8, ...) and reports the mean with each run's figure.
Training runs in the Rasa environment (Python 3.10); this wrapper only prepares and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import Settings  # noqa: E402
from nlu.build import build_project  # noqa: E402
from nlu.runtime import RASA_ENV, ensure_rasa_env, lock_hash  # noqa: E402

WORKER = Path(__file__).with_name("_nlu_f1_worker.py")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1,
                        help="shuffles into folds to average over (each costs one full run)")
    parser.add_argument("--confusions", action="store_true",
                        help="also print the most frequent gold->predicted misses per language")
    parser.add_argument("--config", type=Path,
                        help="try another Rasa pipeline config instead of nlu/project/config.yml")
    args = parser.parse_args()
    settings = Settings(environment="development")
    env = ensure_rasa_env()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_project(settings.languages, settings.default_language, Path(tmp) / "project",
                              extra_fingerprint=lock_hash())
        if args.config:
            (built.directory / "config.yml").write_text(args.config.read_text(encoding="utf-8"),
                                                        encoding="utf-8")
        out = Path(tmp) / "report.json"
        subprocess.run(
            [str(env.python), str(WORKER), str(built.directory), str(out), str(args.folds),
             ",".join(settings.languages), str(args.repeats)],
            env={**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **RASA_ENV},
            check=True,
        )
        report = json.loads(out.read_text())
    runs = f", mean of {args.repeats} shuffles" if args.repeats > 1 else ""
    print(f"NLU intent F1, {args.folds}-fold cross-validation{runs}, one multilingual model "
          f"({report['examples']} examples, {report['seconds']:.0f} s)")
    print(f"{'language':10} {'macro F1':>9} {'accuracy':>9} {'fallback':>9} {'clf F1':>7} "
          f"{'examples':>9}  weakest intents")
    ok = True
    for language, row in report["languages"].items():
        weakest = sorted(row["intents"].items(), key=lambda item: item[1])[:3]
        ok &= row["macro_f1"] >= 0.90
        print(f"{language:10} {row['macro_f1']:9.3f} {row['accuracy']:9.3f} "
              f"{row['fallback_rate']:9.1%} {row['classifier_macro_f1']:7.3f} {row['examples']:9d}  "
              + ", ".join(f"{name} {f1:.2f}" for name, f1 in weakest))
    if args.repeats > 1:
        for language, row in report["languages"].items():
            print(f"{language} per shuffle: "
                  + ", ".join(f"{value:.3f}" for value in row["macro_f1_runs"]))
    if args.confusions:
        for language, row in report["languages"].items():
            misses = ", ".join(f"{gold}->{pred} {n}" for gold, pred, n in row["confusions"][:8])
            print(f"{language} misses: {misses}")
    print(f"goal: macro F1 >= 0.90 in every language -> {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
