"""Runs inside the Rasa environment (Python 3.10) for bench/nlu_f1.py: folds, training,
classification. Writes a JSON report; prints nothing of the examples."""

import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

logging.disable(logging.WARNING)


def load_examples(project: Path, languages):
    examples = []
    for language in languages:
        data = yaml.safe_load((project / "data" / f"nlu-{language}.yml").read_text(encoding="utf-8"))
        for block in data["nlu"]:
            for line in block["examples"].splitlines():
                text = line.strip()
                if text.startswith("- "):
                    examples.append((language, block["intent"], text[2:].strip()))
    return examples


# The shuffle of the single-run figure; repeat r uses FIRST_SEED + r.
FIRST_SEED = 7


def folds_of(examples, k, seed):
    by_group = defaultdict(list)
    for example in examples:
        by_group[(example[0], example[1])].append(example)
    folds = [[] for _ in range(k)]
    rng = random.Random(seed)
    for group in sorted(by_group):
        items = by_group[group]
        rng.shuffle(items)
        for n, example in enumerate(items):
            folds[n % k].append(example)
    return folds


def write_nlu(path: Path, examples):
    by_intent = defaultdict(list)
    for _language, intent, text in examples:
        by_intent[intent].append(text)
    blocks = [{"intent": intent, "examples": "".join(f"- {t}\n" for t in texts)}
              for intent, texts in sorted(by_intent.items())]
    path.write_text(yaml.safe_dump({"version": "3.1", "nlu": blocks}, allow_unicode=True),
                    encoding="utf-8")


def f1_scores(pairs):
    intents = sorted({gold for gold, _ in pairs} | {pred for _, pred in pairs})
    scores = {}
    for intent in intents:
        tp = sum(1 for g, p in pairs if g == intent and p == intent)
        fp = sum(1 for g, p in pairs if g != intent and p == intent)
        fn = sum(1 for g, p in pairs if g == intent and p != intent)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores[intent] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return scores


async def classify(model_path, texts):
    from rasa.core.agent import Agent

    agent = Agent.load(model_path)
    out = []
    for text in texts:
        parsed = await agent.parse_message(text)
        # The pipeline's answer (nlu_fallback when the FallbackClassifier's threshold is not
        # met) and the classifier's own best intent underneath it.
        classifier = next((r["name"] for r in parsed.get("intent_ranking", [])
                           if r["name"] != "nlu_fallback"), parsed["intent"]["name"])
        out.append((parsed["intent"]["name"], classifier))
    return out


def run_folds(project, examples, k, seed):
    """(language, gold, pipeline label, classifier label) for every example, each predicted
    by the model trained on the other k-1 folds of the shuffle `seed`."""
    from rasa.model_training import train_nlu

    folds = folds_of(examples, k, seed)
    predictions = []
    for index in range(k):
        held_out = folds[index]
        training = [e for n, fold in enumerate(folds) if n != index for e in fold]
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "nlu.yml"
            write_nlu(data, training)
            model = train_nlu(config=str(project / "config.yml"), nlu_data=str(data),
                              output=tmp, fixed_model_name=f"fold{index}")
            labels = asyncio.run(classify(model, [text for _l, _i, text in held_out]))
        predictions += [(language, intent, label, classifier)
                        for (language, intent, _t), (label, classifier)
                        in zip(held_out, labels, strict=True)]
    return predictions


def macro(scores, gold_intents):
    return sum(scores[i] for i in gold_intents) / len(gold_intents)


def main():
    project, report_path = Path(sys.argv[1]), Path(sys.argv[2])
    k, languages = int(sys.argv[3]), sys.argv[4].split(",")
    repeats = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    from rasa.utils.log_utils import configure_structlog

    # Rasa's structured log would otherwise print every parsed example at debug level.
    configure_structlog(logging.WARNING)

    started = time.monotonic()
    examples = load_examples(project, languages)
    # Each repeat is another shuffle into folds; scores are computed per repeat and
    # averaged, so one lucky or unlucky split weighs less.
    runs = [run_folds(project, examples, k, FIRST_SEED + r) for r in range(repeats)]
    report = {"examples": len(examples), "seconds": time.monotonic() - started,
              "repeats": repeats, "languages": {}}
    for language in languages:
        per_run = []
        for predictions in runs:
            pairs = [(gold, pred) for lang, gold, pred, _c in predictions if lang == language]
            classifier_pairs = [(gold, c) for lang, gold, _p, c in predictions if lang == language]
            per_run.append((pairs, f1_scores(pairs), f1_scores(classifier_pairs)))
        gold_intents = sorted({g for g, _ in per_run[0][0]})
        all_pairs = [pair for pairs, _s, _c in per_run for pair in pairs]
        macros = [macro(scores, gold_intents) for _p, scores, _c in per_run]
        report["languages"][language] = {
            "macro_f1": sum(macros) / repeats,
            "macro_f1_runs": macros,
            "accuracy": sum(1 for g, p in all_pairs if g == p) / len(all_pairs),
            "classifier_macro_f1": sum(macro(c, gold_intents) for _p, _s, c in per_run) / repeats,
            "fallback_rate": sum(1 for _g, p in all_pairs if p == "nlu_fallback") / len(all_pairs),
            "examples": len(per_run[0][0]),
            "intents": {i: sum(s[i] for _p, s, _c in per_run) / repeats for i in gold_intents},
            # Counts of (gold -> predicted) for the misses over all repeats: labels only,
            # never the texts.
            "confusions": sorted(
                ([gold, pred, n] for (gold, pred), n in Counter(
                    (g, p) for g, p in all_pairs if g != p).items()),
                key=lambda row: -row[2]),
        }
    report_path.write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
