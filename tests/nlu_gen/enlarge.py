"""An enlarged TUNING pool for the generated red-flag sets: the same generator and templates
run again with other seeds, every text whose hash falls in the held-out half dropped, so no
held-out message can ever enter it (docs/nlu.md, "The rule"). Imports tests.nlu_gen.generate
and, for `main` only, nlu (the interpreter it scores with).
Run: .venv/bin/python -m tests.nlu_gen.enlarge --lang hi [--rounds 20] [--first 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import yaml

from . import generate

FIXED = generate.OUT


def pool(lang: str, rounds: int, first: int = 1) -> list[generate.Message]:
    """Tuning-half messages of `rounds` extra seeds (SEED+first ... SEED+first+rounds-1),
    first occurrence of each text only; never a text whose hash puts it in the held-out
    half."""
    if first < 1:
        raise ValueError("first must be at least 1: seed SEED is the fixed sets' own")
    out: list[generate.Message] = []
    seen: set[str] = set()
    for r in range(first, first + rounds):
        for name in generate.SOURCES[lang]:
            doc = yaml.safe_load((generate.HERE / name).read_text(encoding="utf-8"))
            rng = random.Random(f"{generate.SEED + r}:{name}")
            n = generate.PER_LANGUAGE // len(generate.SOURCES[lang])
            for m in generate._messages(doc, n, rng):
                if m.text in seen or generate.held_out(m.text):
                    continue
                seen.add(m.text)
                out.append(m)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lang", required=True, choices=sorted(generate.SOURCES))
    ap.add_argument("--rounds", type=int, default=20, help="extra seeds (default 20)")
    ap.add_argument("--first", type=int, default=1, help="first extra seed (default 1)")
    ap.add_argument("--out", type=Path, default=None, help="also write the pool as YAML")
    args = ap.parse_args(argv)

    from nlu.evaluate import evaluate_redflags
    from nlu.interpreter import Interpreter

    msgs = pool(args.lang, args.rounds, args.first)
    text = generate.render(args.lang, "tuning (enlarged)", msgs)
    path = args.out or Path("/tmp") / f"carebridge_{args.lang}_tuning_pool.yml"
    path.write_text(text, encoding="utf-8")
    it = Interpreter()
    rf = evaluate_redflags(lambda t: it.interpret(t, None, args.lang), path)
    print(
        f"enlarged tuning pool {args.lang} (seeds +{args.first}..+{args.first + args.rounds - 1}, "
        f"held-out texts dropped): "
        f"recall {rf.recall:.4f} ({rf.positives} messages, {rf.confirmed} by a confirmation "
        f"question); false alarms {rf.false_alarm_rate:.4f} ({rf.benign} benign, "
        f"{rf.benign_asked} asked)"
    )
    for t, want, got in rf.missed:
        print(f"  MISSED {t!r}: want {list(want)} got {list(got)}")
    for t, got in rf.false_alarms:
        print(f"  FALSE ALARM {t!r}: {list(got)}")
    return 0 if rf.recall == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
