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
from typing import Sequence

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
# \w without CJK ideographs: letters (any script), digits, underscore, combining marks.
_WORD_CHAR = rf"[^\W{_CJK}]"
_WORD_RE = re.compile(rf"{_WORD_CHAR}+(?:[-/.'’]{_WORD_CHAR}+)*|[{_CJK}]|[^\s]", re.UNICODE)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words of ``text``, in order."""
    return [m.span() for m in _WORD_RE.finditer(text)]


def token_word_index(
    text: str, words: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]
) -> list[int]:
    """For each token, the index of the word it belongs to, or -1 (special and pad tokens).

    A token belongs to the word holding its first non-space character. Tokenizers that
    glue a leading space onto a token (SentencePiece ``▁``) report spans starting on the
    space, hence the skip.
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
            result.append(-1)
            continue
        i = bisect.bisect_right(starts, start) - 1
        result.append(i if i >= 0 and words[i][0] <= start < words[i][1] else -1)
    return result
