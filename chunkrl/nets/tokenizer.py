"""FAST-style action-chunk tokenizer: quantile normalisation, DCT over time, rounding, optional BPE.

Encoding a chunk ``[h, A]``:

1. each action dimension is mapped to ``[-1, 1]`` by its dataset quantiles (``low`` -> -1, ``high`` -> 1,
   default the 1st and 99th percentiles) and clipped;
2. per dimension, an orthonormal DCT-II over the chunk's ``h`` time steps;
3. the coefficients are multiplied by ``scale`` (default 10) and rounded to integers;
4. flattened frequency-major: the ``A`` coefficients of frequency 0, then those of frequency 1, ...;
5. shifted by the smallest coefficient that can occur, ``-bound`` with ``bound = ceil(scale * sqrt(h))``
   (an orthonormal DCT keeps the vector's length, so no coefficient of a chunk in ``[-1, 1]^h`` exceeds
   ``sqrt(h)`` in size): every symbol lies in ``[0, 2 * bound]``;
6. optionally compressed by byte-pair encoding (the ``tokenizers`` library) trained on dataset chunks,
   to ``vocab_size`` tokens (default 1024). Without BPE, a token is a symbol.

Decoding inverts each step. Any token sequence decodes without an error: a sequence whose symbols do
not number ``h * A`` is padded with zero coefficients or cut, and reported as invalid, so that a policy
that emits a malformed chunk is counted (``tokenizer/invalid_decodes``) instead of crashing the run.
The rounding is the only loss: every coefficient is off by at most ``0.5 / scale``, so a normalised
chunk comes back within ``0.5 * sqrt(h * A) / scale`` in Euclidean norm (the inverse DCT is orthonormal).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from scipy.fft import dct, idct

SYMBOL_BASE = 0x4E00
"""Symbols become characters from this code point on (a block of letters: no spaces, no control
characters) so that BPE sees each chunk as one word."""


@dataclass
class TokenizerSettings:
    """How chunks are tokenized (the run config's ``ppo.tokenizer`` section)."""

    scale: float = 10.0
    """DCT coefficients are multiplied by this before rounding: larger is finer (and longer sequences)."""
    bpe: bool = True
    """Compress the rounded coefficients with byte-pair encoding trained on the dataset's chunks."""
    vocab_size: int = 1024
    """BPE vocabulary size (symbols included)."""
    low_quantile: float = 0.01
    """Quantile of each action dimension mapped to -1."""
    high_quantile: float = 0.99
    """Quantile of each action dimension mapped to +1."""

    def problems(self, section: str) -> list[str]:
        problems = []
        if self.scale <= 0:
            problems.append(f"{section}.scale must be > 0 (got {self.scale})")
        if not 0.0 <= self.low_quantile < self.high_quantile <= 1.0:
            problems.append(
                f"{section}: need 0 <= low_quantile < high_quantile <= 1 "
                f"(got {self.low_quantile}, {self.high_quantile})"
            )
        if self.vocab_size < 2:
            problems.append(f"{section}.vocab_size must be >= 2 (got {self.vocab_size})")
        return problems


class TokenizerError(ValueError):
    """A tokenizer's settings or file are malformed; the message says what and where."""


MAX_SYMBOLS = 0xD800 - SYMBOL_BASE
"""Symbols are characters from SYMBOL_BASE up to the UTF-16 surrogates: a scale whose alphabet would not fit
(about scale * sqrt(h) > 17,000) is refused."""


class ChunkTokenizer:
    """Chunks ``[h, A]`` <-> token sequences; see the module docstring for the steps."""

    def __init__(
        self,
        horizon: int,
        action_dim: int,
        low: np.ndarray,
        high: np.ndarray,
        scale: float = 10.0,
        bpe_json: str | None = None,
        max_tokens: int | None = None,
    ):
        try:
            self.horizon, self.action_dim, self.scale = int(horizon), int(action_dim), float(scale)
            self.low = np.asarray(low, dtype=np.float64).reshape(self.action_dim)
            self.high = np.asarray(high, dtype=np.float64).reshape(self.action_dim)
        except (TypeError, ValueError) as error:
            raise TokenizerError(f"tokenizer: malformed sizes or bounds ({error})") from None
        if self.horizon < 1 or self.action_dim < 1:
            raise TokenizerError(f"tokenizer: horizon and action_dim must be >= 1 (got {horizon}, {action_dim})")
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()) or np.any(self.high <= self.low):
            raise TokenizerError("tokenizer: every action dimension needs finite bounds with high > low")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise TokenizerError(f"tokenizer: scale must be a positive number (got {scale})")
        self.bound = math.ceil(self.scale * math.sqrt(self.horizon))
        self.num_symbols = 2 * self.bound + 1
        if self.num_symbols > MAX_SYMBOLS:
            raise TokenizerError(
                f"tokenizer: scale {self.scale} needs {self.num_symbols} symbols for chunks of {self.horizon}, "
                f"more than the {MAX_SYMBOLS} available; use a smaller --ppo.tokenizer.scale"
            )
        self.bpe_json = bpe_json
        self.max_tokens = max_tokens or self.horizon * self.action_dim
        if not (isinstance(self.max_tokens, int) and 1 <= self.max_tokens <= self.horizon * self.action_dim):
            raise TokenizerError(
                f"tokenizer: max_tokens must be between 1 and {self.horizon * self.action_dim} (got {max_tokens})"
            )
        """Tokens a policy may emit per chunk: all symbols without BPE; with BPE 1.5 times the longest
        fitted chunk (at most the symbol count)."""
        self._bpe = None
        self._pieces: list[np.ndarray] | None = None
        if bpe_json is not None:
            self._load_bpe(bpe_json)

    def _load_bpe(self, bpe_json: str) -> None:
        """The BPE vocabulary: every token a sequence of this tokenizer's symbols, ids 0 .. size - 1."""
        from tokenizers import Tokenizer

        try:
            self._bpe = Tokenizer.from_str(bpe_json)
        except Exception as error:  # tokenizers raises its own exception types for malformed JSON
            raise TokenizerError(f"tokenizer: the BPE vocabulary cannot be read ({error})") from None
        vocab = self._bpe.get_vocab()
        self._pieces = [np.zeros(0, dtype=np.int64)] * len(vocab)
        for text, index in vocab.items():
            symbols = np.fromiter((ord(c) - SYMBOL_BASE for c in text), dtype=np.int64)
            if not (0 <= index < len(vocab)) or not text or symbols.min() < 0 or symbols.max() >= self.num_symbols:
                raise TokenizerError(f"tokenizer: the BPE vocabulary has a malformed entry {text!r} -> {index}")
            self._pieces[index] = symbols

    # ------------------------------------------------------------------ building
    @classmethod
    def fit(cls, chunks: np.ndarray, settings: TokenizerSettings, valid: np.ndarray | None = None) -> ChunkTokenizer:
        """Quantiles from the chunks' actions (only the ``valid`` [N, h] positions) and, with
        ``settings.bpe``, a BPE vocabulary trained on the chunks' symbol strings."""
        chunks = np.asarray(chunks, dtype=np.float64)
        _, horizon, action_dim = chunks.shape
        actions = chunks.reshape(-1, action_dim) if valid is None else chunks[np.asarray(valid, bool)]
        low = np.quantile(actions, settings.low_quantile, axis=0)
        high = np.quantile(actions, settings.high_quantile, axis=0)
        flat = high - low < 1e-6  # a constant dimension: give it a unit range around its value
        low, high = np.where(flat, low - 1.0, low), np.where(flat, high + 1.0, high)
        tokenizer = cls(horizon, action_dim, low, high, settings.scale)
        if settings.bpe:
            tokenizer = cls(horizon, action_dim, low, high, settings.scale, tokenizer.train_bpe(chunks, settings))
            longest = max(len(ids) for ids in tokenizer.encode(chunks))
            tokenizer.max_tokens = min(tokenizer.max_symbols, math.ceil(1.5 * longest))
        return tokenizer

    @classmethod
    def for_bounds(cls, horizon: int, low: np.ndarray, high: np.ndarray, scale: float = 10.0) -> ChunkTokenizer:
        """A tokenizer without BPE for actions known to lie in ``[low, high]`` (no data needed)."""
        return cls(horizon, len(np.asarray(low).reshape(-1)), low, high, scale)

    def train_bpe(self, chunks: np.ndarray, settings: TokenizerSettings) -> str:
        """A BPE vocabulary (as the ``tokenizers`` JSON) over the symbol strings of ``chunks``."""
        from tokenizers import Tokenizer, models, trainers

        if settings.vocab_size < self.num_symbols:
            raise ValueError(
                f"tokenizer.vocab_size {settings.vocab_size} is smaller than the {self.num_symbols} symbols of "
                f"horizon {self.horizon} at scale {self.scale}; raise it or lower the scale"
            )
        alphabet = [chr(SYMBOL_BASE + s) for s in range(self.num_symbols)]
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=settings.vocab_size,
            min_frequency=2,
            show_progress=False,
            initial_alphabet=alphabet,
            limit_alphabet=self.num_symbols,
            max_token_length=10_000,
        )
        bpe.train_from_iterator(self._strings(self.symbols(chunks)), trainer=trainer)
        return bpe.to_str()

    # ------------------------------------------------------------------ steps
    def normalize(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(2.0 * (actions - self.low) / (self.high - self.low) - 1.0, -1.0, 1.0)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high]; decoded coefficients of a sampled sequence can land past ±1, and the
        actions stay inside the bounds the tokenizer was made for (as encoding clips them)."""
        return (np.clip(normalized, -1.0, 1.0) + 1.0) / 2.0 * (self.high - self.low) + self.low

    def symbols(self, chunks: np.ndarray) -> np.ndarray:
        """Chunks [N, h, A] -> integer symbols [N, h * A] in ``[0, num_symbols)``, frequency-major."""
        coefficients = dct(self.normalize(np.asarray(chunks, dtype=np.float64)), type=2, norm="ortho", axis=1)
        rounded = np.rint(coefficients * self.scale).astype(np.int64)
        return (rounded + self.bound).reshape(len(rounded), -1)

    def chunks_from_symbols(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols [N, h * A] -> chunks [N, h, A] in the dataset's action units."""
        coefficients = (np.asarray(symbols, dtype=np.float64) - self.bound) / self.scale
        coefficients = coefficients.reshape(-1, self.horizon, self.action_dim)
        return self.unnormalize(idct(coefficients, type=2, norm="ortho", axis=1))

    @staticmethod
    def _strings(symbols: np.ndarray) -> list[str]:
        return ["".join(map(chr, row + SYMBOL_BASE)) for row in np.asarray(symbols)]

    # ------------------------------------------------------------------ public
    @property
    def bpe(self) -> bool:
        return self._bpe is not None

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens (BPE vocabulary, or the symbols)."""
        return len(self._pieces) if self._pieces is not None else self.num_symbols

    @property
    def max_symbols(self) -> int:
        return self.horizon * self.action_dim

    def encode(self, chunks: np.ndarray) -> list[list[int]]:
        """Chunks [N, h, A] -> one token id list per chunk."""
        symbols = self.symbols(chunks)
        if self._bpe is None:
            return symbols.tolist()
        return [e.ids for e in self._bpe.encode_batch(self._strings(symbols))]

    def decode(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Token id lists -> (chunks [N, h, A], invalid [N] bool). A sequence with an unknown id or whose
        symbols do not number ``h * A`` is repaired (unknown ids dropped, padded with zero coefficients or
        cut) and marked invalid."""
        n = self.max_symbols
        out = np.full((len(sequences), n), self.bound, dtype=np.int64)  # symbol `bound` = coefficient 0
        invalid = np.zeros(len(sequences), dtype=bool)
        for i, ids in enumerate(sequences):
            ids = np.asarray(ids, dtype=np.int64)
            known = (ids >= 0) & (ids < self.vocab_size)
            ids = ids[known]
            if self._pieces is None:
                symbols = ids
            else:
                symbols = np.concatenate([self._pieces[j] for j in ids]) if len(ids) else ids
            invalid[i] = not known.all() or len(symbols) != n
            out[i, : min(n, len(symbols))] = symbols[:n]
        return self.chunks_from_symbols(out), invalid

    # ------------------------------------------------------------------ files
    def to_json(self) -> str:
        return json.dumps(
            {
                "horizon": self.horizon,
                "action_dim": self.action_dim,
                "scale": self.scale,
                "low": self.low.tolist(),
                "high": self.high.tolist(),
                "bpe": self.bpe_json,
                "max_tokens": self.max_tokens,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ChunkTokenizer:
        """``to_json``'s output; anything else is a ``TokenizerError`` saying what is wrong."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise TokenizerError(f"tokenizer: not JSON ({error})") from None
        keys = ("horizon", "action_dim", "low", "high", "scale", "bpe", "max_tokens")
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            raise TokenizerError(f"tokenizer: the file lacks {missing}")
        return cls(*(data[k] for k in keys))
