"""dl4nlp: reference implementations for the Deep Learning for NLP course.

One chapter, one module (`dl4nlp.rnn`, ...); each module's pure functions are
what students reimplement in that chapter's assignment.

Dimension letters, used in every docstring and shape comment:
    B batch, T time (T_q / T_k for queries and keys), D model or input width,
    H hidden size (or heads, in the attention chapters), Dh head size,
    V vocabulary, K kernel width, C channels or classes, L layers.
"""

__version__ = "0.1.0"
