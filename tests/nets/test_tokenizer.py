"""The FAST-style chunk tokenizer: hand-computed DCT symbols, round trips, BPE, malformed sequences."""

import math

import numpy as np
import pytest

from chunkrl.nets.tokenizer import ChunkTokenizer, TokenizerSettings


def identity_tokenizer(horizon, action_dim, scale=10.0):
    """Quantile range [-1, 1]: normalisation is the identity."""
    return ChunkTokenizer(horizon, action_dim, -np.ones(action_dim), np.ones(action_dim), scale)


def smooth_chunks(n=400, horizon=5, action_dim=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, horizon)[None, :, None]
    return 0.8 * np.sin(
        2 * np.pi * (rng.uniform(0.1, 0.6, (n, 1, action_dim)) * t + rng.uniform(0, 1, (n, 1, action_dim)))
    )


def test_symbols_of_a_two_step_chunk_by_hand():
    # h = 2: orthonormal DCT-II is c0 = (x0 + x1) / sqrt(2), c1 = (x0 - x1) / sqrt(2); scale 10, rounded,
    # frequency-major (both dimensions' c0, then both c1), shifted by bound = ceil(10 sqrt(2)) = 15.
    tokenizer = identity_tokenizer(horizon=2, action_dim=2)
    chunk = np.array([[[0.5, -0.2], [0.1, 0.4]]])  # [1, h=2, A=2]
    c0 = [(0.5 + 0.1) / math.sqrt(2), (-0.2 + 0.4) / math.sqrt(2)]  # 0.4243, 0.1414
    c1 = [(0.5 - 0.1) / math.sqrt(2), (-0.2 - 0.4) / math.sqrt(2)]  # 0.2828, -0.4243
    expected = [round(10 * c) + 15 for c in (*c0, *c1)]  # [19, 16, 18, 11]
    assert tokenizer.bound == 15 and tokenizer.num_symbols == 31
    assert tokenizer.symbols(chunk).tolist() == [expected] == [[19, 16, 18, 11]]


def test_round_trip_error_is_bounded_by_the_quantisation_scale():
    for scale in (10.0, 50.0):
        tokenizer = identity_tokenizer(horizon=5, action_dim=3, scale=scale)
        chunks = smooth_chunks()
        decoded, invalid = tokenizer.decode(tokenizer.encode(chunks))
        assert not invalid.any()
        errors = np.linalg.norm((decoded - chunks).reshape(len(chunks), -1), axis=1)
        assert errors.max() <= 0.5 * math.sqrt(5 * 3) / scale + 1e-9  # each coefficient off by <= 0.5 / scale
        assert errors.max() > 0  # rounding did happen (the bound is not vacuous)


def test_quantile_normalisation_is_inverted_on_decode():
    chunks = smooth_chunks() * np.array([3.0, 0.1, 1.0]) + np.array([1.0, -2.0, 0.0])
    tokenizer = ChunkTokenizer.fit(chunks, TokenizerSettings(bpe=False, low_quantile=0.0, high_quantile=1.0))
    decoded, _ = tokenizer.decode(tokenizer.encode(chunks))
    ranges = tokenizer.high - tokenizer.low
    # in normalised units the bound above holds; in action units it scales with each dimension's range
    per_dim = np.abs(decoded - chunks).max(axis=(0, 1))
    assert np.all(per_dim <= 0.5 * math.sqrt(15) / 10 * ranges / 2 + 1e-9)


def test_bpe_is_lossless_over_symbols_and_shorter():
    chunks = smooth_chunks(n=600)
    plain = ChunkTokenizer.fit(chunks, TokenizerSettings(bpe=False))
    bpe = ChunkTokenizer.fit(chunks, TokenizerSettings(bpe=True, vocab_size=256))
    sequences = bpe.encode(chunks)
    assert bpe.vocab_size == 256
    assert np.mean([len(s) for s in sequences]) < plain.max_symbols  # compression
    decoded_bpe, invalid = bpe.decode(sequences)
    decoded_plain, _ = plain.decode(plain.encode(chunks))
    assert not invalid.any()
    np.testing.assert_array_equal(decoded_bpe, decoded_plain)
    again = ChunkTokenizer.from_json(bpe.to_json())  # saved with the run, loaded back
    assert again.encode(chunks[:20]) == sequences[:20]
    assert again.max_tokens == bpe.max_tokens


def test_malformed_sequences_decode_and_are_counted():
    tokenizer = ChunkTokenizer.fit(smooth_chunks(), TokenizerSettings(bpe=True, vocab_size=128))
    good = tokenizer.encode(smooth_chunks(n=1))[0]
    sequences = [good, good[:1], good + good, [], [10_000, -3], good]
    chunks, invalid = tokenizer.decode(sequences)
    assert chunks.shape == (6, 5, 3) and np.isfinite(chunks).all()
    assert invalid.tolist() == [False, True, True, True, True, False]
    np.testing.assert_array_equal(chunks[0], chunks[5])


@pytest.mark.parametrize("horizon", [1, 4, 7])
def test_no_chunk_in_range_leaves_the_symbol_alphabet(horizon):
    tokenizer = identity_tokenizer(horizon, 2)
    extreme = np.ones((2, horizon, 2))
    extreme[1] *= -1
    symbols = tokenizer.symbols(extreme)
    assert symbols.min() >= 0 and symbols.max() < tokenizer.num_symbols


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("low"), r"lacks \['low'\]"),
        (lambda d: d.update(low=[float("nan")] * len(d["low"])), "finite bounds"),
        (lambda d: d.update(high=d["low"]), "high > low"),
        (lambda d: d.update(scale=1e9), "symbols"),
        (lambda d: d.update(scale=-1.0), "scale must be a positive number"),
        (lambda d: d.update(max_tokens=10**9), "max_tokens must be between"),
        (lambda d: d.update(bpe="garbage"), "BPE vocabulary cannot be read"),
        (lambda d: d.update(bpe=d["bpe"].replace('"model"', '"mode1"', 1)), "BPE vocabulary cannot be read"),
    ],
)
def test_a_tampered_tokenizer_file_is_refused_saying_what_is_wrong(change, message):
    import json

    from chunkrl.nets.tokenizer import TokenizerError

    chunks = np.random.default_rng(0).uniform(-1, 1, (300, 3, 2))
    data = json.loads(ChunkTokenizer.fit(chunks, TokenizerSettings(vocab_size=64)).to_json())
    change(data)
    with pytest.raises(TokenizerError, match=message):
        ChunkTokenizer.from_json(json.dumps(data))
    with pytest.raises(TokenizerError, match="not JSON"):
        ChunkTokenizer.from_json("{{{")
