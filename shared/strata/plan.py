"""A plan: which tier runs which blocks, whether the branch runs, how tensors travel.

Blocks 0..N-1 make the main path (block 0 is conv1). A plan cuts it twice:

    device: blocks [0, a)    edge: blocks [a, b)    cloud: blocks [b, N)

a = 0 uploads the raw input; b = N keeps the cloud out; a = b leaves the edge as a
relay. The branch can only run when conv1 runs on the device (a >= 1). `variant` names
the pruned model the blocks after conv1 come from ("" is the unpruned model).
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

    def check(self, blocks: int) -> Plan:
        """Return self if it fits a model of `blocks` blocks, else raise saying why."""
        if not 0 <= self.a <= self.b <= blocks:
            raise PlanError(f"plan needs 0 <= a <= b <= {blocks}, got a={self.a}, b={self.b}")
        if self.codec not in CODECS:
            raise PlanError(f"unknown codec {self.codec!r}: expected one of {', '.join(CODECS)}")
        if self.branch and self.a < 1:
            raise PlanError("the branch needs conv1 on the device (a >= 1)")
        return self

    def to_header(self) -> dict:
        return asdict(self)

    @classmethod
    def from_header(cls, header: object, blocks: int) -> Plan:
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
        return cls(a, b, codec, branch, variant).check(blocks)


def default_plan(blocks: int, bundle: bool = True) -> Plan:
    """The plan before the planner has measured anything: conv1 and the branch here,
    the first half of the rest at the edge, the deeper half in the cloud. A model with
    no browser bundle (made by `strata split`) sends its input to the edge instead."""
    if not bundle:
        return Plan(0, min(blocks, (blocks + 1) // 2), "f16", False)
    return Plan(1, min(blocks, (blocks + 1) // 2 + 1), "f16", True)
