"""GloRank: generative list-wise reranking with global semantic item IDs.

Python bindings of the Rust library (https://github.com/glorank/glorank-rs):

* :class:`Reranker` loads a run directory written by ``glorank demo`` / ``glorank run`` and
  reranks requests (dicts in the JSON form of ``glorank rerank``), one or a batch;
* :class:`SemanticIds` and :class:`Tokenizer`: the item table and the item tokenizer, with
  numpy arrays in and out;
* :func:`decode`: the prefix-trie constrained decoder over a Python scoring callback or a
  numpy score table;
* :func:`list_metrics`, :func:`auc`, :func:`confidence_interval`: the list-wise metrics;
* :func:`load_config`, :func:`run`, :func:`read_metrics`: the configuration tree as
  ``glorank run`` reads it, the whole pipeline into a run directory, a run's metrics.

Errors of the library raise :class:`GlorankError` with the Rust error's message.
"""

from ._glorank import (
    GlorankError,
    Reranker,
    SemanticIds,
    Tokenizer,
    __version__,
    auc,
    confidence_interval,
    decode,
    list_metrics,
    load_config,
    read_metrics,
    run,
)

__all__ = [
    "GlorankError",
    "Reranker",
    "SemanticIds",
    "Tokenizer",
    "__version__",
    "auc",
    "confidence_interval",
    "decode",
    "list_metrics",
    "load_config",
    "read_metrics",
    "run",
]
