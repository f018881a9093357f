"""The early-exit rule: how confident the branch must be to answer in the browser.

Two rules, both on the branch's logits: "max_prob" (highest softmax probability, exit
when >= threshold) and "entropy" (softmax entropy divided by log(classes), exit when
<= threshold). Calibration picks one and its threshold; the manifest records them.
"""

from __future__ import annotations

import numpy as np

RULES = ("max_prob", "entropy")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def exit_score(logits: np.ndarray, rule: str) -> np.ndarray:
    """Per-sample score, oriented so that higher always means "more confident"."""
    probs = softmax(logits.astype(np.float64))
    if rule == "max_prob":
        return probs.max(axis=-1)
    if rule == "entropy":
        entropy = -(probs * np.log(np.clip(probs, 1e-30, None))).sum(axis=-1)
        return -entropy / np.log(logits.shape[-1])
    raise ValueError(f"unknown exit rule {rule!r}: expected one of {RULES}")


def should_exit(logits: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    """True where the branch's answer is final (max_prob >= t, or normalized entropy <= t)."""
    score = exit_score(logits, rule)
    return score >= threshold if rule == "max_prob" else score >= -threshold
