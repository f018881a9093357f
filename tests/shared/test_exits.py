"""Exit rules: max softmax probability and normalized entropy."""

import numpy as np
import pytest

from strata.exits import exit_score, should_exit, softmax


def test_softmax_rows_sum_to_one_even_for_large_logits():
    probs = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(probs.sum(1), 1) and np.allclose(probs[1], 0.5)


def test_confident_rows_exit_and_uniform_rows_do_not():
    logits = np.array([[10.0, 0, 0, 0], [0.0, 0, 0, 0]])
    assert should_exit(logits, "max_prob", 0.9).tolist() == [True, False]
    assert should_exit(logits, "entropy", 0.1).tolist() == [True, False]
    assert np.isclose(exit_score(logits, "entropy")[1], -1.0)  # uniform: normalized entropy 1


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="max_prob"):
        exit_score(np.zeros((1, 3)), "margin")
