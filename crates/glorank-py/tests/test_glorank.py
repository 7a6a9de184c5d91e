"""Tests of the installed `glorank` package (pip install ./crates/glorank-py)."""

import json
import math

import numpy as np
import pytest

import glorank


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny"
    glorank._glorank._write_tiny_run(str(path), seed=2)
    return path


@pytest.fixture(scope="module")
def reranker(run):
    return glorank.Reranker(str(run))


def known_items(reranker, n):
    """The first `n` integer-named items the model knows (synthetic ids are "i<k>")."""
    items = []
    k = 0
    while len(items) < n and k < 10_000:
        if reranker.semantic_id(f"i{k}") is not None:
            items.append(f"i{k}")
        k += 1
    assert len(items) == n, items
    return items


def test_rerank_one_request_as_dict_and_as_json(reranker):
    items = known_items(reranker, 12)
    listed = reranker.rerank({"candidates": items})
    assert len(listed) == reranker.list_len == 6
    assert len(set(listed)) == 6 and set(listed) <= set(items)
    assert reranker.rerank(json.dumps({"candidates": items})) == listed
    # numpy arrays are accepted where the JSON has arrays.
    scores = np.linspace(0, 1, 12, dtype=np.float32)
    assert reranker.rerank({"candidates": items, "retriever_scores": scores}) == listed


def test_rerank_batch_matches_single_and_reports_errors(reranker):
    items = known_items(reranker, 14)
    a = {"candidates": items[:12]}
    b = {"candidates": items[2:]}
    bad = {"candidates": ["no-such-item"] + items[:11]}
    assert reranker.rerank_batch([a, b]) == [reranker.rerank(a), reranker.rerank(b)]
    with pytest.raises(glorank.GlorankError, match="request 1: .*no-such-item"):
        reranker.rerank_batch([a, bad])
    assert reranker.rerank_batch([a, bad, b], errors="none") == [
        reranker.rerank(a),
        None,
        reranker.rerank(b),
    ]


def test_errors_carry_the_rust_message(run, reranker):
    items = known_items(reranker, 12)
    with pytest.raises(glorank.GlorankError, match="no-such-item"):
        reranker.rerank({"candidates": ["no-such-item"] + items[1:]})
    with pytest.raises(glorank.GlorankError, match="appears twice"):
        reranker.rerank({"candidates": [items[0]] * 12})
    with pytest.raises(glorank.GlorankError, match="unknown field"):
        reranker.rerank({"candidates": items, "bogus": 1})
    with pytest.raises(glorank.GlorankError, match="beam width"):
        glorank.Reranker(str(run), decode="beam:100000")
    with pytest.raises(glorank.GlorankError, match="prefix penalty"):
        glorank.Reranker(str(run), prefix_penalty=-1.0)
    spread = glorank.Reranker(str(run), prefix_penalty=2.0)
    assert len(set(spread.rerank({"candidates": items}))) == spread.list_len
    with pytest.raises(glorank.GlorankError, match="not found"):
        glorank.Reranker(str(run / "missing"))


def test_semantic_ids_and_tokenizer_use_numpy(run, reranker):
    ids = glorank.SemanticIds.load(str(run))
    table = ids.to_numpy()
    assert table.dtype == np.uint32 and table.shape == (len(ids), ids.depth)
    assert list(ids.vocab_sizes) == [4, 4, ids.vocab_sizes[2]]
    np.testing.assert_array_equal(ids.tuple(3), table[3])
    assert ids.item(table[3].tolist()) == 3
    with pytest.raises(glorank.GlorankError, match="out of range"):
        ids.tuple(len(ids))

    tok = glorank.Tokenizer.load(str(run))
    assert tok.codes_per_level == [4, 4]
    dim = tok.input_dim
    vectors = np.random.default_rng(0).normal(size=(5, dim)).astype(np.float32)
    codes = tok.encode(vectors)
    assert codes.dtype == np.uint32 and codes.shape == (5, 2)
    assert (codes < 4).all()
    with pytest.raises(glorank.GlorankError):
        tok.encode(np.zeros((2, dim + 1), dtype=np.float32))

    # A cold item is served from its vector alone; we can see the codes it gets and the
    # known items that share them.
    cold = reranker.cold_item(vectors[0], neighbours=3)
    np.testing.assert_array_equal(cold["codes"], codes[0])
    assert 1 <= len(cold["neighbours"]) <= 3
    for n in cold["neighbours"]:
        shared = reranker.semantic_id(n)[: cold["shared_levels"]]
        np.testing.assert_array_equal(shared, codes[0][: cold["shared_levels"]])
    with pytest.raises(glorank.GlorankError, match="values"):
        reranker.cold_item(np.zeros(3, dtype=np.float32))
    items = known_items(reranker, 11)
    listed = reranker.rerank(
        {"candidates": items + ["brand-new"], "candidate_vectors": {"brand-new": vectors[0]}}
    )
    assert len(listed) == 6


def test_decode_with_a_callback_and_a_score_table():
    tuples = np.array([[0, 1], [0, 3], [2, 0], [1, 1]], dtype=np.uint32)
    vocab = [3, 4]
    calls = []

    def prefer_high(step, level, slot, prefixes):
        calls.append((step, level, slot, prefixes.shape))
        rows = prefixes.shape[0]
        return np.tile(np.arange(vocab[level], dtype=np.float32), (rows, 1))

    [best] = glorank.decode(tuples, vocab, 2, prefer_high)
    # Highest first token (2 -> [2, 0]), then the best remaining: [1, 1].
    assert best["items"] == [2, 3]
    assert best["tokens"] == [2, 0, 1, 1]
    assert math.isclose(best["logprob"], sum(best["token_logprobs"]), rel_tol=1e-5)
    assert calls[0] == (0, 0, 0, (1, 0)) and calls[1][3] == (1, 1)

    table = np.array([[0.0, 1.0, 2.0, -1.0], [0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    [same] = glorank.decode(tuples, vocab, 2, table)
    assert same["items"] == [2, 3]
    beams = glorank.decode(tuples, vocab, 2, table, decode="beam:3")
    assert len(beams) == 3 and beams[0]["items"] == [2, 3]
    assert beams[0]["logprob"] >= beams[1]["logprob"] >= beams[2]["logprob"]
    sampled = glorank.decode(tuples, vocab, 4, table, decode="sample:1.0", seed=5)
    assert sorted(sampled[0]["items"]) == [0, 1, 2, 3]
    assert glorank.decode(tuples, vocab, 4, table, decode="sample:1.0", seed=5) == sampled

    with pytest.raises(glorank.GlorankError, match="shape"):
        glorank.decode(tuples, vocab, 2, lambda *a: np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(glorank.GlorankError, match="list"):
        glorank.decode(tuples, vocab, 5, table)
    with pytest.raises(glorank.GlorankError):
        glorank.decode(np.array([[0, 9]], dtype=np.uint32), vocab, 1, table)


def test_metrics():
    relevance = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    m = glorank.list_metrics([1, 0, 3, 2], relevance, 4)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(1.0)
    assert m["map_hits"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert 0 < m["ndcg"] <= 1
    assert glorank.auc(np.array([0.9, 0.1, 0.5]), [True, False, False]) == pytest.approx(1.0)
    assert glorank.auc(np.array([0.9, 0.1]), [True, True]) is None
    mean, half = glorank.confidence_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == pytest.approx(2.0) and half > 0
    with pytest.raises(glorank.GlorankError):
        glorank.list_metrics([9], relevance, 1)


def test_load_config_reads_the_tree_as_glorank_run_does(tmp_path):
    c = glorank.load_config(overrides=["sft.epochs=3", "rl.optim.batch_size=32"])
    assert c["sft"]["epochs"] == 3
    assert c["rl"]["optim"]["batch_size"] == 32
    assert c["rl"]["optim"]["learning_rate"] == 5e-05
    quick = glorank.load_config(preset="quick")
    assert quick["eval"]["beam"] == 8 and quick["data"]["users"] == 450
    path = tmp_path / "c.toml"
    path.write_text("[policy]\nuse_exposures = true\n")
    with pytest.raises(glorank.GlorankError, match="inputs.exposures"):
        glorank.load_config(str(path))
    with pytest.raises(glorank.GlorankError, match="epochz"):
        glorank.load_config(overrides=["sft.epochz=3"])


def test_run_writes_a_run_directory_and_returns_its_metrics(tmp_path):
    tiny = [
        "data.users=60", "data.items=40", "data.sessions=4", "data.k_core=3",
        "data.pool_size=12", "data.history=8", "tokenizer.codes=4", "tokenizer.levels=2",
        "policy.d_model=16", "policy.heads=2", "evaluator.epochs=1", "simulator.epochs=1",
        "sft.epochs=1", "rl.steps=2", "rl.eval_every=1", "baselines.epochs=1",
        "baselines.d_model=16", "eval.las=false", "eval.beam=1", "sft.valid_beam=1",
        "rl.valid_beam=1",
    ]
    metrics = glorank.run(str(tmp_path / "run"), preset="quick", overrides=tiny)
    assert 0.0 <= metrics["GloRank SFT+RL"]["precision"]["mean"] <= 1.0
    assert "PRM" in metrics and "GloRank-LAS" not in metrics
    assert glorank.read_metrics(str(tmp_path / "run")) == metrics
    reranker = glorank.Reranker(str(tmp_path / "run"))
    assert reranker.decode == "greedy"


def log_rows(users=40, per_user=6, items=60, seed=0):
    """A small request log: pools of 12 from 60 items, 6 shown, clicks likelier on items
    whose number is a multiple of 3, each user's earlier clicks as its history."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for u in range(users):
        history = []
        for k in range(per_user):
            pool = [f"i{j}" for j in rng.choice(items, 12, replace=False)]
            shown = pool[:6]
            clicks = [float(rng.random() < (0.6 if int(i[1:]) % 3 == 0 else 0.1)) for i in shown]
            t += 1
            rows.append({
                "request_id": f"r{t}", "timestamp": t, "user": f"u{u}",
                "history": [{"item": i, "labels": 1} for i in history[-8:]],
                "candidates": pool, "retriever_scores": [float(x) for x in rng.random(12)],
                "shown": shown, "feedback": {"click": clicks},
            })
            history += [i for i, c in zip(shown, clicks) if c > 0]
    return rows


def test_run_on_a_log_table_and_rerank_a_table_of_requests(tmp_path):
    import pandas as pd
    import pyarrow as pa

    rows = log_rows()
    table = pa.Table.from_pylist(rows)
    tiny = [
        "data.pool_size=12", "data.history=8", "tokenizer.codes=4", "tokenizer.levels=2",
        "policy.d_model=16", "policy.heads=2", "policy.item_content=false",
        "evaluator.epochs=1", "simulator.epochs=1", "sft.epochs=1", "rl.steps=2",
        "rl.eval_every=1", "baselines.epochs=1", "baselines.d_model=16", "eval.las=false",
        "eval.beam=1", "sft.valid_beam=1", "rl.valid_beam=1",
    ]
    out = tmp_path / "run"
    metrics = glorank.run(str(out), preset="quick", overrides=tiny, data=table)
    assert "logged order" in metrics and "retriever order" in metrics
    assert (out / "input" / "requests.parquet").exists()
    # The same table again continues the run; another table is refused.
    assert glorank.run(str(out), preset="quick", overrides=tiny, data=table) == metrics
    with pytest.raises(glorank.GlorankError, match="another table"):
        glorank.run(str(out), preset="quick", overrides=tiny, data=pa.Table.from_pylist(rows[:-1]))
    # A pandas DataFrame and a Parquet path are read alike.
    frame = glorank.run(str(tmp_path / "frame"), preset="quick", overrides=tiny,
                        data=pd.DataFrame(rows))
    assert frame == metrics
    reranker = glorank.Reranker(str(out))
    served = [{k: v for k, v in r.items() if k in ("user", "history", "candidates",
                                                    "retriever_scores")} for r in rows[-5:]]
    expected = reranker.rerank_batch(served)
    assert reranker.rerank_batch(pa.Table.from_pylist(rows[-5:])) == expected
    assert reranker.rerank_batch(pd.DataFrame(rows[-5:])) == expected


def test_duplicate_keys_are_refused_as_everywhere(reranker):
    items = known_items(reranker, 12)
    doubled = json.dumps({"candidates": items})[:-1] + ', "candidates": []}'
    with pytest.raises(glorank.GlorankError, match="duplicate key `candidates`"):
        reranker.rerank(doubled)


def test_a_run_without_manifest_is_served_with_a_warning(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert glorank.Reranker(str(run)).verified
    (copy / "manifest.json").unlink()
    with pytest.warns(UserWarning, match="no manifest.json"):
        unverified = glorank.Reranker(str(copy))
    assert not unverified.verified


# Values the fuzzer puts where a request field, an argument or a list element goes.
STRANGE = [
    None, True, 0, -1, 2**31, 2**64, -(2**70), 0.5, float("nan"), float("inf"), "", "x" * 1000,
    "é", [], [[[]]], {}, {"a": 1}, b"bytes", (1, 2), np.float32(1.0),
    np.array([1.0, np.nan]), np.zeros((2, 2)), object(),
]


def mutate_request(rng, request):
    """One random change of a request dict (a key dropped, added or given a strange value)."""
    out = dict(request)
    roll = rng.random()
    keys = ["candidates", "history", "user", "retriever_scores", "exposures",
            "candidate_vectors", "bogus"]
    key = rng.choice(keys)
    if roll < 0.2:
        out.pop(key, None)
    elif roll < 0.6:
        out[key] = rng.choice(STRANGE)
    elif roll < 0.8 and isinstance(out.get("candidates"), list):
        c = list(out["candidates"])
        if c:
            c[rng.randrange(len(c))] = rng.choice(STRANGE)
        out["candidates"] = c
    else:
        # A deep nesting, past the converter's depth bound.
        v = 1
        for _ in range(rng.randrange(1, 200)):
            v = [v]
        out[key] = v
    return out


def mutate_text(rng, text):
    """Byte-level edits of a JSON string (flips, truncation, duplication)."""
    b = bytearray(text.encode())
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        if roll < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(32, 127)
        elif roll < 0.6 and b:
            del b[rng.randrange(len(b)):]
        elif b:
            i, j = sorted(rng.randrange(len(b)) for _ in range(2))
            b[j:j] = b[i:j]
    return b.decode(errors="replace")


def test_fuzz_the_entry_points_argument_checks(run, reranker):
    """A seeded fuzzer over what Python users pass: requests (dicts and JSON strings),
    batches, decode strategies, penalties and metric inputs. Each call either answers or
    raises GlorankError / TypeError / ValueError / OverflowError; nothing else escapes and
    the process does not crash."""
    import random

    rng = random.Random(20261207)
    items = known_items(reranker, 12)
    good = {"candidates": items, "history": [{"item": items[0], "labels": 3}]}
    allowed = (glorank.GlorankError, TypeError, ValueError, OverflowError)
    answered = refused = 0
    for case in range(2000):
        kind = case % 5
        try:
            if kind == 0:
                reranker.rerank(mutate_request(rng, good))
            elif kind == 1:
                reranker.rerank(mutate_text(rng, json.dumps(good)))
            elif kind == 2:
                batch = [mutate_request(rng, good) for _ in range(rng.randrange(0, 4))]
                if rng.random() < 0.3:
                    batch.append(rng.choice(STRANGE))
                reranker.rerank_batch(batch, errors=rng.choice(["raise", "none", "bogus"]))
            elif kind == 3:
                decode = rng.choice(["greedy", "beam:0", "beam:-1", "beam:1e9", "sample:nan",
                                     "sample:0", "sample:1:0", "sample:1:99999999999", "",
                                     "beam:", "x" * 100, "beam:3"])
                glorank.decode(np.array([[0, 1], [1, 0]], dtype=np.uint32), [2, 2],
                               rng.choice([0, 1, 2, 3, -1]),
                               np.zeros((2, 2), dtype=np.float32), decode=decode,
                               seed=rng.choice([0, 1, 2**63]))
            else:
                relevance = np.array([rng.choice([0.0, 1.0, float("nan"), -1.0])
                                      for _ in range(rng.randrange(0, 6))])
                glorank.list_metrics([rng.randrange(-2, 8) for _ in range(rng.randrange(0, 4))],
                                     relevance, rng.choice([0, 1, 4, 2**40]))
            answered += 1
        except allowed:
            refused += 1
    # Both outcomes happen: the mutations reach past the first check.
    assert answered > 0 and refused > 0, (answered, refused)
    # Constructor arguments: a strange decode or penalty is refused with a message.
    for decode in ["beam:0", "sample:-1", "nope"]:
        with pytest.raises(allowed):
            glorank.Reranker(str(run), decode=decode)
    for penalty in [float("nan"), float("inf"), -1.0]:
        with pytest.raises(allowed):
            glorank.Reranker(str(run), prefix_penalty=penalty)
