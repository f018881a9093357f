"""A plan: which tier runs which blocks, whether the branch runs, how tensors travel.

Blocks 0..N-1 make the main path (block 0 is conv1). A plan cuts it twice:

    device: blocks [0, a)    edge: blocks [a, b)    cloud: blocks [b, N)

a = 0 uploads the raw input; b = N keeps the cloud out; a = b leaves the edge as a
relay. The branch reads the input of block K, its attach point (1 for our model: conv1's
output; any K for a branch `strata branch` distilled), so it can only run when the device
runs blocks [0, K) (a >= K). `variant` names the pruned model the blocks after conv1 come
from ("" is the unpruned model).
"""

from __future__ import annotations

import reprlib
from dataclasses import asdict, dataclass

from strata.codecs import CODECS


class PlanError(ValueError):
    """A plan that does not fit the model it is meant for."""


@dataclass(frozen=True)
class Plan:
    a: int  # first block off the device
    b: int  # first block in the cloud
    codec: str = "f16"
    branch: bool = True
    variant: str = ""

    def check(self, blocks: int, attach: int = 1) -> Plan:
        """Return self if it fits a model of `blocks` blocks whose branch attaches at block
        `attach` (strata.bundle.attach_point), else raise saying why."""
        if not 0 <= self.a <= self.b <= blocks:
            raise PlanError(f"plan needs 0 <= a <= b <= {blocks}, got a={self.a}, b={self.b}")
        if self.codec not in CODECS:
            raise PlanError(f"unknown codec {self.codec!r}: expected one of {', '.join(CODECS)}")
        if self.branch and self.a < attach:
            needs = "conv1" if attach == 1 else f"blocks [0, {attach})"
            raise PlanError(f"the branch needs {needs} on the device (a >= {attach})")
        return self

    def to_header(self) -> dict:
        return asdict(self)

    @classmethod
    def from_header(cls, header: object, blocks: int, attach: int = 1) -> Plan:
        """Parse and check a plan received over the wire (booleans are not integers here)."""
        if not isinstance(header, dict):
            raise PlanError(f"plan must be an object with a, b, codec, branch; got {reprlib.repr(header)}")
        a, b = header.get("a"), header.get("b")
        codec, branch = header.get("codec", "f16"), header.get("branch", True)
        variant = header.get("variant", "")
        if type(a) is not int or type(b) is not int or not isinstance(codec, str) or not isinstance(branch, bool) \
                or not isinstance(variant, str):
            raise PlanError(f"plan needs integers a and b, a string codec, a boolean branch and a string variant; "
                            f"got {reprlib.repr(header)}")
        return cls(a, b, codec, branch, variant).check(blocks, attach)


def default_plan(blocks: int, attach: int | None = 1) -> Plan:
    """The plan before the planner has measured anything: the blocks before the branch's
    attach point (conv1 for ours) and the branch here, the first half of the rest at the
    edge, the deeper half in the cloud. A model with no browser bundle (attach None: one
    made by `strata split` that `strata branch` did not give a branch) sends its input to
    the edge instead."""
    if attach is None:
        return Plan(0, min(blocks, (blocks + 1) // 2), "f16", False)
    return Plan(attach, min(blocks, max(attach, (blocks + 1) // 2 + 1)), "f16", True)
