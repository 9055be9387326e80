"""Words of a note and their exact character spans, and the mapping from tokens to words.

A "word" here is what a clinician reads as one unit, independent of the tokenizer:

* letters and digits joined by inner ``- / . ' ’`` stay one word, so ``mg/dL``, ``3.5``,
  ``T2DM``, ``follow-up`` and ``patient's`` each shade as one piece;
* every CJK ideograph is its own word (there is no whitespace to split on, and BERT-family
  tokenizers also split them one by one);
* any other visible character (``.``, ``,``, ``(`` ...) is a word of its own;
* whitespace is never part of a word, however much of it there is.

Tokens are mapped to words through the tokenizer's character offsets into the original
text, so accents, case folding and ``[UNK]`` never move a highlight.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import Sequence

_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002ebef\U0002f800-\U0002fa1f\U00030000-\U0003134f"
)
# \w without CJK ideographs: letters (any script), digits, underscore. Python's \w leaves
# out combining marks (a decomposed "é", Devanagari vowel signs); word_spans glues them on.
_WORD_CHAR = rf"[^\W{_CJK}]"
_WORD_RE = re.compile(rf"{_WORD_CHAR}+(?:[-/.'’]{_WORD_CHAR}+)*|[{_CJK}]|[^\s]", re.UNICODE)


def _is_mark(text: str) -> bool:
    return all(unicodedata.category(ch).startswith("M") for ch in text)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words of ``text``, in order."""
    spans: list[tuple[int, int]] = []
    for match in _WORD_RE.finditer(text):
        start, end = match.span()
        if spans and spans[-1][1] == start:
            previous = text[spans[-1][0] : spans[-1][1]]
            # A combining mark belongs to the letter before it, and letters right after a
            # mark continue the same word ("cafe" + U+0301 + "s" is one word).
            if _is_mark(text[start:end]) or (_is_mark(previous[-1]) and match.group()[0].isalnum()):
                spans[-1] = (spans[-1][0], end)
                continue
        spans.append((start, end))
    return spans


def token_word_index(
    text: str, words: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]
) -> list[int]:
    """For each token, the index of the word it belongs to, or -1 (special and pad tokens).

    A token belongs to the word holding its first non-space character (a token spanning
    two words, rare, counts for the first). Tokenizers that glue a leading space onto a
    token (SentencePiece ``▁``) report spans starting on the space, hence the skip; a token
    that is only space goes to the next word, so its attribution is not lost.
    """
    starts = [s for s, _ in words]
    result: list[int] = []
    for start, end in offsets:
        if end <= start:
            result.append(-1)
            continue
        while start < end and text[start].isspace():
            start += 1
        if start >= end:
            following = bisect.bisect_left(starts, end)
            result.append(following if following < len(words) else -1)
            continue
        i = bisect.bisect_right(starts, start) - 1
        result.append(i if i >= 0 and words[i][0] <= start < words[i][1] else -1)
    return result
