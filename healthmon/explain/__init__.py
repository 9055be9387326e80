"""Word-level integrated-gradients explanations of calibrated scores.

    from healthmon.explain import explain, to_html
    e = explain(classifier, note_text)            # the predicted label
    e = explain(classifier, note_text, "cancer")  # any label
    html = to_html(e)
"""

from healthmon.explain.faithfulness import FRACTIONS, rank_agreement, score_drops
from healthmon.explain.integrated import clear_cache, explain, explain_many
from healthmon.explain.options import ExplainOptions
from healthmon.explain.render import from_dict, to_dict, to_html, to_html_page, to_json
from healthmon.explain.words import token_word_index, word_spans

__all__ = [
    "FRACTIONS",
    "ExplainOptions",
    "clear_cache",
    "explain",
    "explain_many",
    "rank_agreement",
    "score_drops",
    "from_dict",
    "to_dict",
    "to_html",
    "to_html_page",
    "to_json",
    "token_word_index",
    "word_spans",
]
