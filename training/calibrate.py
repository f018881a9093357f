"""Choose the exit rule and threshold on the validation split, and record the curves.

For every candidate threshold the curve gives the exit rate, the accuracy of the
samples that exit (answered by the branch) and the system accuracy (exited samples
answered by the branch, the rest by the main path). The chosen operating point exits
as many samples as possible while keeping the system accuracy within `tolerance` of the
main path's own accuracy on the same split.
"""

from __future__ import annotations

import numpy as np

from strata.exits import RULES, exit_score, should_exit

CURVE_POINTS = 101
DEFAULT_TOLERANCE = 0.003  # accuracy (0.3 points): a margin under the 0.5-point target


def curve(branch_logits: np.ndarray, main_logits: np.ndarray, labels: np.ndarray, rule: str) -> list[dict]:
    """Operating points of one rule, from "everything exits" to "nothing exits"."""
    score = exit_score(branch_logits, rule)
    branch_right = branch_logits.argmax(1) == labels
    main_right = main_logits.argmax(1) == labels
    cuts = np.unique(np.quantile(score, np.linspace(0, 1, CURVE_POINTS)))
    points = []
    for cut in [*cuts, np.inf]:
        exits = score >= cut
        exited = int(exits.sum())
        points.append({
            # stored as the user-facing threshold: max prob >= t, or normalized entropy <= t
            "threshold": None if np.isinf(cut) else float(cut if rule == "max_prob" else -cut),
            "exit_rate": exited / len(labels),
            "exited_accuracy": float(branch_right[exits].mean()) if exited else None,
            "system_accuracy": float(np.where(exits, branch_right, main_right).mean()),
        })
    return points


def calibrate(branch_logits: np.ndarray, main_logits: np.ndarray, labels: np.ndarray,
              tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Pick rule and threshold with the highest exit rate whose accuracy loss is within tolerance."""
    main_accuracy = float((main_logits.argmax(1) == labels).mean())
    curves = {rule: curve(branch_logits, main_logits, labels, rule) for rule in RULES}
    candidates = [(point["exit_rate"], rule, point) for rule, points in curves.items() for point in points
                  if point["threshold"] is not None and point["system_accuracy"] >= main_accuracy - tolerance]
    if not candidates:
        raise ValueError("no threshold keeps the system accuracy within tolerance of the main path")
    _, rule, best = max(candidates, key=lambda c: c[0])
    return {
        "rule": rule,
        "threshold": best["threshold"],
        "tolerance": tolerance,
        "validation": {"main_accuracy": main_accuracy,
                       "branch_accuracy": float((branch_logits.argmax(1) == labels).mean()),
                       "exit_rate": best["exit_rate"], "exited_accuracy": best["exited_accuracy"],
                       "system_accuracy": best["system_accuracy"]},
        "curves": curves,
    }


def figures_at_exit(logits: tuple[np.ndarray, np.ndarray], labels: np.ndarray, calibration: dict) -> dict:
    """Accuracy of both paths and of the system at the calibrated exit (torch outputs) on one split."""
    main, branch = (l.argmax(1) == labels for l in logits)
    exits = should_exit(logits[1], calibration["rule"], calibration["threshold"])
    return {"images": len(labels), "main_accuracy": float(main.mean()), "branch_accuracy": float(branch.mean()),
            "exit_rate": float(exits.mean()), "exited_accuracy": float(branch[exits].mean()) if exits.any() else None,
            "system_accuracy": float(np.where(exits, branch, main).mean())}
