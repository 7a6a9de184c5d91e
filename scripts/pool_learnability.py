#!/usr/bin/env python3
"""How far do per-candidate pool signals take a learned ranker, without modelling taste?

Reads the CSVs of `cargo run --release -p glorank-examples --example pool_features -- RUN DIR`
and, for growing feature sets, fits LightGBM (binary click objective) on the training rows,
ranks each validation and test request's candidates by the predicted click probability and
prints Precision@L, next to the "retriever reversed" rule and the label oracle.

    python3 -m venv /tmp/lgb && /tmp/lgb/bin/pip install lightgbm numpy
    /tmp/lgb/bin/python scripts/pool_learnability.py DIR [L]
"""
import sys

import lightgbm as lgb
import numpy as np

COLUMNS = ("request,score,rank,zscore,gap,in_prior,in_window,novelty,popularity,history,"
           "logged,click").split(",")
FEATURE_SETS = [
    ("retriever rank", ["rank"]),
    ("score, rank, z-score, gap", ["score", "rank", "zscore", "gap"]),
    ("+ in history window", ["score", "rank", "zscore", "gap", "in_window"]),
    ("+ in prior sequence", ["score", "rank", "zscore", "gap", "in_window", "in_prior"]),
    ("+ pool novelty", ["score", "rank", "zscore", "gap", "in_window", "in_prior", "novelty"]),
    ("+ popularity, history length",
     ["score", "rank", "zscore", "gap", "in_window", "in_prior", "novelty", "popularity",
      "history"]),
]


def precision_at(rows, scores, length):
    """Mean over requests of the clicked share of the `length` best-scored candidates."""
    request, click = rows[:, 0].astype(int), rows[:, COLUMNS.index("click")]
    order = np.lexsort((-scores, request))  # by request, then by score descending
    request, click = request[order], click[order]
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    ends = np.r_[starts[1:], len(request)]
    return float(np.mean([click[s:min(s + length, e)].sum() / length
                          for s, e in zip(starts, ends)]))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folder, length = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 6
    data = {}
    for split in ("train", "valid", "test"):
        path = f"{folder}/{split}.csv"
        with open(path) as f:
            header = f.readline().strip().split(",")
        if header != COLUMNS:
            sys.exit(f"{path}: expected the columns {','.join(COLUMNS)}")
        data[split] = np.loadtxt(path, delimiter=",", skiprows=1)
    print(f"| features | valid Precision@{length} | test Precision@{length} |")
    print("|---|---|---|")
    rank = COLUMNS.index("rank")
    print(f"| rule: retriever reversed | {precision_at(data['valid'], data['valid'][:, rank], length):.4f}"
          f" | {precision_at(data['test'], data['test'][:, rank], length):.4f} |")
    click = COLUMNS.index("click")
    for name, features in FEATURE_SETS:
        idx = [COLUMNS.index(f) for f in features]
        params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 63,
                  "verbose": -1, "num_threads": 2, "seed": 0, "deterministic": True}
        model = lgb.train(params, lgb.Dataset(data["train"][:, idx], data["train"][:, click]),
                          num_boost_round=300)
        got = [precision_at(data[s], model.predict(data[s][:, idx]), length)
               for s in ("valid", "test")]
        print(f"| {name} | {got[0]:.4f} | {got[1]:.4f} |", flush=True)
    print(f"| oracle (the labels) | {precision_at(data['valid'], data['valid'][:, click], length):.4f}"
          f" | {precision_at(data['test'], data['test'][:, click], length):.4f} |")


if __name__ == "__main__":
    main()
