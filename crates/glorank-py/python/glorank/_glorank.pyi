"""Type stubs of the native module ``glorank._glorank``."""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

StrPath = Union[str, "PathLike[str]"]
Request = Union[Mapping[str, Any], str]

class GlorankError(Exception):
    """An error of the GloRank library; the message names the file, field or item."""

class ColdItem(TypedDict):
    codes: npt.NDArray[np.uint32]
    shared_levels: int
    neighbours: list[str]

class Reranker:
    """A trained GloRank policy with its tables, loaded from a run directory."""

    def __init__(
        self,
        run_dir: StrPath,
        policy: Optional[StrPath] = None,
        decode: Optional[str] = None,
        prefix_penalty: float = 0.0,
    ) -> None: ...
    def rerank(self, request: Request) -> list[str]:
        """Reranks one request; returns the list of item ids, best first."""
    def rerank_batch(
        self, requests: Union[Sequence[Request], Any], errors: Literal["raise", "none"] = "raise"
    ) -> list[Optional[list[str]]]:
        """Reranks many requests in one batched decode: a sequence of requests, or a pyarrow
        Table / pandas DataFrame of them (log-only columns ignored)."""
    def semantic_id(self, item: str) -> Optional[npt.NDArray[np.uint32]]: ...
    def cold_item(self, vector: npt.NDArray[np.float32], neighbours: int = 5) -> ColdItem:
        """The codes a cold item's vector gets and the known items sharing most of them."""
    @property
    def list_len(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def uses_retriever_score(self) -> bool: ...
    @property
    def uses_exposures(self) -> bool: ...
    @property
    def decode(self) -> str: ...

class SemanticIds:
    """The semantic-ID table of a run: one token tuple per item."""

    @staticmethod
    def load(path: StrPath) -> "SemanticIds": ...
    def __len__(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def vocab_sizes(self) -> list[int]: ...
    def tuple(self, index: int) -> npt.NDArray[np.uint32]: ...
    def item(self, tuple: Sequence[int]) -> Optional[int]: ...
    def to_numpy(self) -> npt.NDArray[np.uint32]:
        """The table, shape ``(items, depth)``."""

class Tokenizer:
    """A fitted item tokenizer (residual k-means or RQ-VAE)."""

    @staticmethod
    def load(path: StrPath) -> "Tokenizer": ...
    @property
    def input_dim(self) -> Optional[int]: ...
    @property
    def codes_per_level(self) -> list[int]: ...
    def encode(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]:
        """Codes of each row, shape ``(rows, levels)``."""

class DecodedList(TypedDict):
    items: list[int]
    tokens: list[int]
    token_logprobs: list[float]
    logprob: float

Scorer = Callable[[int, int, int, npt.NDArray[np.uint32]], npt.ArrayLike]

def decode(
    tuples: npt.NDArray[np.uint32],
    vocab_sizes: Sequence[int],
    list_len: int,
    scorer: Union[Scorer, npt.NDArray[np.float32]],
    decode: str = "greedy",
    seed: int = 0,
) -> list[DecodedList]:
    """Constrained decoding of distinct candidates; ``scorer(step, level, slot, prefixes)``
    returns scores of shape ``(rows, vocab)``, or a ``(depth, max vocab)`` table is given."""

def list_metrics(
    ranked: Sequence[int], relevance: npt.NDArray[np.float64], k: int
) -> dict[str, float]: ...
def auc(scores: npt.NDArray[np.float64], labels: Sequence[bool]) -> Optional[float]: ...
def confidence_interval(values: npt.NDArray[np.float64]) -> tuple[float, float]: ...
def load_config(
    config: Optional[StrPath] = None,
    overrides: Sequence[str] = (),
    preset: Optional[str] = None,
) -> dict[str, Any]:
    """The configuration tree as ``glorank run`` reads it: the defaults or a preset
    ("quick", "demo"), the TOML file ``config``, then ``section.key=value`` overrides."""

def run(
    out: StrPath,
    config: Optional[StrPath] = None,
    overrides: Sequence[str] = (),
    preset: Optional[str] = None,
    data_path: Optional[StrPath] = None,
    seed: Optional[int] = None,
    verbose: bool = False,
    data: Optional[Union[StrPath, Any]] = None,
) -> dict[str, Any]:
    """Runs every stage into the run directory ``out``; returns its ``metrics.json``.
    ``data``: a data path, or a request log as a pyarrow Table or pandas DataFrame."""

def read_metrics(path: StrPath) -> dict[str, Any]:
    """A run's ``metrics.json`` (the run directory or the file) as a dict."""

def _write_tiny_run(path: StrPath, seed: int = 0) -> "Path":
    """Writes a tiny run directory with an untrained policy (the package's tests)."""
