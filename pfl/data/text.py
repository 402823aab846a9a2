"""TensorFlow Federated's character vocabulary for Shakespeare.

TFF's 86 characters (the order of its text-generation tutorial) get ids
1..86; 0 is padding, 87 out-of-vocabulary, 88 beginning and 89 end of a
snippet: a vocabulary of 90. A snippet becomes [BOS] + characters + [EOS],
padded with 0 to a multiple of seq_len + 1 and cut into rows of seq_len + 1;
each row gives an input (its first seq_len ids) and a target (the next
character at every position). Characters are bytes of the UTF-8 text, as in
TFF (a non-ASCII character is several OOV tokens).
"""

from __future__ import annotations

import numpy as np

CHAR_VOCAB = 'dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#\'/37;?bfjnrvzBFJNRVZ"&*.26:\naeimquyAEIMQUY]!%)-159\r'
PAD = 0
OOV = len(CHAR_VOCAB) + 1  # 87
BOS = len(CHAR_VOCAB) + 2  # 88
EOS = len(CHAR_VOCAB) + 3  # 89
VOCAB_SIZE = len(CHAR_VOCAB) + 4  # 90
SPECIAL = (PAD, OOV, BOS, EOS)

# byte -> id
BYTE_TABLE = np.full(256, OOV, dtype=np.uint8)
for _i, _c in enumerate(CHAR_VOCAB):
    BYTE_TABLE[ord(_c)] = _i + 1


def encode_bytes(snippet: bytes) -> np.ndarray:
    return BYTE_TABLE[np.frombuffer(snippet, dtype=np.uint8)]


def encode_chars(text: str) -> np.ndarray:
    """Character-wise (one id per character; used for LEAF's fixed-width strings)."""
    return np.array([BYTE_TABLE[o] if (o := ord(c)) < 256 else OOV for c in text], dtype=np.uint8)


def snippet_rows(snippet: bytes, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each [rows, seq_len] uint8, for one snippet."""
    ids = np.concatenate([[BOS], encode_bytes(snippet), [EOS]]).astype(np.uint8)
    width = seq_len + 1
    rows = -(-len(ids) // width)
    padded = np.zeros(rows * width, dtype=np.uint8)
    padded[: len(ids)] = ids
    padded = padded.reshape(rows, width)
    return padded[:, :-1], padded[:, 1:]
