"""An answer read by the model's output kind, and the doubt it carries (strata.device)."""

import numpy as np
import pytest

from strata.device import LOW_CONFIDENCE, _answer, read_output, summarize


def test_logits_are_softmaxed_and_probabilities_are_not_softmaxed_twice():
    logits = np.array([[1.0, 3.0, 0.0]])
    label, confidence, summary = read_output(logits, "logits")
    assert label == 1 and summary is None
    assert np.isclose(confidence, np.exp(3) / (np.exp(1) + np.exp(3) + 1))
    label, confidence, _ = read_output(np.array([[0.2, 0.62, 0.18]]), "probabilities")
    assert label == 1 and np.isclose(confidence, 0.62)  # a trailing Softmax: 0.62, not softmax(0.62)
    label, confidence, _ = read_output(np.array([[[0.1], [0.9]]]), "probabilities")
    assert label == 1 and np.isclose(confidence, 0.9)


def test_an_output_that_is_not_scores_gets_a_summary_and_no_label():
    output = np.zeros((1, 2, 3, 4), np.float32)
    output[0, 1, 2, 3], output[0, 0, 1, 0], output[0, 1, 0, 0] = 5.0, 2.0, -1.0
    label, confidence, summary = read_output(output, "tensor")
    assert label == -1 and confidence is None
    assert summary == summarize(output[0])
    assert summary["shape"] == [2, 3, 4] and summary["min"] == -1.0 and summary["max"] == 5.0
    assert summary["top"][:2] == [{"at": [1, 2, 3], "value": 5.0}, {"at": [0, 1, 0], "value": 2.0}]
    assert len(summary["top"]) == 5 and np.isclose(summary["mean"], 6 / 24)
    with pytest.raises(ValueError, match="unknown output kind 'boxes'"):
        read_output(output, "boxes")


def test_an_answer_is_uncertain_when_unsure_or_when_the_branch_disagrees():
    sure = np.array([[0.0, 9.0, 0.0]])
    assert _answer(sure, "edge", {}).uncertain is None
    unsure = np.array([[1.0, 1.2, 1.1]])
    assert read_output(unsure, "logits")[1] < LOW_CONFIDENCE
    assert _answer(unsure, "edge", {}).uncertain == "low-confidence"
    branch = np.array([[5.0, 0.0, 0.0]])
    answer = _answer(sure, "cloud", {}, branch_logits=branch)
    assert (answer.uncertain, answer.branch_label, answer.label) == ("branch-disagrees", 0, 1)
    agreeing = _answer(sure, "cloud", {}, branch_logits=np.array([[0.0, 2.0, 0.0]]))
    assert agreeing.uncertain is None and agreeing.branch_label == 1
    exited = _answer(branch, "browser", {}, exited=True, branch_logits=branch)
    assert exited.branch_label is None and exited.uncertain is None  # the branch's own answer
    tensor = _answer(np.ones((1, 4, 4)), "edge", {}, kind="tensor")
    assert tensor.uncertain is None and tensor.to_dict()["summary"]["shape"] == [4, 4]
