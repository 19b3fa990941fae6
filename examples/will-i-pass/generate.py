#!/usr/bin/env python3
"""Writes the "Will I pass this class?" data set of docs/TUTORIAL.md: earlier years' students, each
with the lectures they attended, the hours they spent on the final project, and whether they passed.

The rule (what the network has to learn, and is never told):

    score  = 0.5 * lectures + 0.5 * hours - 4 + noise,   noise ~ Normal(0, 1)
    passed = 1 if score > 0 else 0

lectures is a whole number in 0..10 (uniform), hours a multiple of 0.5 in 0..10 (uniform). The noise
makes some students pass or fail against the trend, as real ones do, so no model gets every one right
(the rule itself, noise-free, classifies about 90% of these 400 correctly). A student with 4 lectures
and 5 hours scores 0.5 before noise: about 7 in 10 such students pass.

The generator is seeded: the same seed writes the same bytes (the tutorial's test checks that the
committed CSV files are what `python3 generate.py` writes). Python's `random` module only.

    python3 examples/will-i-pass/generate.py [--seed 6191] [--train 300] [--test 100] [--out DIR]
"""
import argparse
import os
import random


def student(rng):
    lectures = rng.randint(0, 10)
    hours = rng.randint(0, 20) / 2
    score = 0.5 * lectures + 0.5 * hours - 4 + rng.gauss(0, 1)
    return lectures, hours, 1 if score > 0 else 0


def write(path, rows):
    with open(path, "w", newline="\n") as f:
        f.write("lectures,hours,passed\n")
        for lectures, hours, passed in rows:
            f.write(f"{lectures},{hours:g},{passed}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=6191)
    ap.add_argument("--train", type=int, default=300, help="students in train.csv")
    ap.add_argument("--test", type=int, default=100, help="students in test.csv")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    if args.train < 1 or args.test < 1:
        ap.error(f"--train and --test must be at least 1 (got {args.train} and {args.test})")
    rng = random.Random(args.seed)
    rows = [student(rng) for _ in range(args.train + args.test)]
    write(os.path.join(args.out, "train.csv"), rows[:args.train])
    write(os.path.join(args.out, "test.csv"), rows[args.train:])
    passed = sum(r[2] for r in rows)
    print(f"wrote {args.train} + {args.test} students ({passed} passed) to {args.out}/train.csv and test.csv")


if __name__ == "__main__":
    main()
