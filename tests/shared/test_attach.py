"""A branch attached after block K, without conv1 in its bundle (what `strata branch` writes):
the executor's input stem, the device's two stretches around the branch, the plan, the
planner and the context. Runs in CPython (pytest) and inside Pyodide."""

import numpy as np
import pytest

from strata import device
from strata.binary import weights_to_file
from strata.bundle import sha256, write_bundle
from strata.context import ContextTracker
from strata.device_route import NUMPY, ORT, Segment
from strata.executor import load_browser_model
from strata.layers import avgpool2
from strata.plan import Plan, PlanError, default_plan
from strata.planner import Context, Costs, Goal, Link, plan

RNG = np.random.default_rng(0)
BLOCKS = [  # a split model's four blocks; the branch reads block 2's input, (8, 16, 16)
    {"input_shape": [3, 32, 32], "output_shape": [4, 32, 32], "macs": 110_000},
    {"input_shape": [4, 32, 32], "output_shape": [8, 16, 16], "macs": 300_000},
    {"input_shape": [8, 16, 16], "output_shape": [16, 8, 8], "macs": 300_000},
    {"input_shape": [16, 8, 8], "output_shape": [5], "macs": 80},
]


def bundle(pools: int, threshold: np.ndarray, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Two binary layers 8 -> 16 -> 16 channels with random +-1 weights, a 5-class classifier."""
    rng = np.random.default_rng(seed)
    tensors = {"input.threshold": threshold.astype(np.float32),
               "binary1.threshold": rng.integers(-20, 20, 16).astype(np.int16),
               "binary1.weight": weights_to_file(rng.choice([-1.0, 1.0], (16, 8, 3, 3))),
               "binary2.weight": weights_to_file(rng.choice([-1.0, 1.0], (16, 16, 3, 3))),
               "classifier.weight": rng.normal(size=(5, 16)).astype(np.float16),
               "classifier.bias": rng.normal(size=5).astype(np.float16)}
    description = {"input": {"threshold": "input.threshold", "pools": pools},
                   "binary": [{"weight": "binary1.weight", "threshold": "binary1.threshold", "cin": 8, "cout": 16,
                               "pool": True},
                              {"weight": "binary2.weight", "threshold": None, "cin": 16, "cout": 16, "pool": False}],
                   "classifier": {"weight": "classifier.weight", "bias": "classifier.bias"}}
    return description, tensors


def model(pools: int = 0, threshold: np.ndarray | None = None, attach: int = 2, exit_threshold: float = 0.5,
          seed: int = 0):
    threshold = np.zeros(8) if threshold is None else threshold
    data = write_bundle(*bundle(pools, threshold, seed))
    manifest = {"blocks": BLOCKS, "input": {"shape": [3, 32, 32]}, "artifacts": {"b.bin": sha256(data)},
                "browser_bundle": {"file": "b.bin", "format_version": 1, "attach": attach},
                "exit": {"rule": "max_prob", "threshold": exit_threshold}}
    return load_browser_model(manifest, {"b.bin": data}), manifest


def test_the_input_is_average_pooled_then_thresholded_per_channel():
    threshold = RNG.normal(size=8)
    stem, _ = model(pools=2, threshold=threshold)
    plain, _ = model()  # the same weights, reading its input as is, +1 above 0
    features = RNG.normal(size=(3, 8, 64, 64)).astype(np.float32)
    shifted = avgpool2(avgpool2(features)) - threshold.astype(np.float32)[:, None, None]
    assert not stem.holds_conv1 and stem.attach == 2
    assert np.array_equal(stem.branch_logits(features), plain.branch_logits(shifted))
    assert np.array_equal(stem.branch_logits(features), stem.branch_logits_float_reference(features))


def test_odd_maps_pool_by_flooring_as_torch_does():
    odd = np.arange(2 * 1 * 5 * 7, dtype=np.float32).reshape(2, 1, 5, 7)
    assert avgpool2(odd).shape == (2, 1, 2, 3)
    assert avgpool2(odd)[0, 0, 0, 0] == np.mean(odd[0, 0, :2, :2])


def _two_stretches(exits: bool) -> None:
    branch, _ = model(exit_threshold=0.0 if exits else 1.01)
    x = RNG.normal(size=(3, 32, 32)).astype(np.float32)
    pending = device.start(branch, x, Plan(3, 4, "f16", True), 1, 4)
    assert pending.blocks == (0, 2) and pending.branch_at == 2
    features = RNG.normal(size=(1, 8, 16, 16)).astype(np.float32)
    pending = device.after_blocks(pending, features, Plan(3, 4, "f16", True), 1, 4, branch)
    assert "branch_ms" in pending.timing and pending.features is features
    if exits:
        assert pending.answer.exited and pending.answer.tier == "browser" and pending.blocks is None
        return
    assert pending.answer is None and pending.blocks == (2, 3) and pending.block_input is features
    pending = device.after_blocks(pending, np.zeros((1, 16, 8, 8), np.float32), Plan(3, 4, "f16", True), 1, 4, branch)
    assert pending.request is not None and pending.request.tensor.shape == (1, 16, 8, 8)


def test_the_device_runs_blocks_before_the_branch_then_answers_when_it_is_confident():
    _two_stretches(exits=True)


def test_the_device_runs_blocks_before_the_branch_then_the_rest_when_it_is_not():
    _two_stretches(exits=False)


def test_without_the_branch_the_device_runs_its_blocks_in_one_stretch():
    branch, _ = model()
    pending = device.start(branch, np.zeros((3, 32, 32), np.float32), Plan(3, 4, "f16", False), 1, 4)
    assert pending.blocks == (0, 3) and pending.branch_at is None


def test_the_plan_needs_the_blocks_before_the_attach_point_for_the_branch():
    assert Plan(2, 4, branch=True).check(4, attach=2)
    with pytest.raises(PlanError, match=r"blocks \[0, 2\) on the device \(a >= 2\)"):
        Plan(1, 4, branch=True).check(4, attach=2)
    with pytest.raises(PlanError, match="conv1"):
        Plan(0, 4, branch=True).check(4)
    assert default_plan(4, attach=2) == Plan(2, 3, "f16", True)
    assert default_plan(7) == Plan(1, 5, "f16", True)
    assert default_plan(4, attach=None) == Plan(0, 2, "f16", False)


def test_the_planner_pays_the_blocks_before_the_attach_point_on_every_sample():
    wifi, cloud = Link(10, 50e6, 50e6), Link(10, 1e8, 1e8)
    table = dict(device_ms=[1.0, 3.0, 30.0, 1.0], edge_ms=[0.1, 0.3, 3.0, 0.1], cloud_ms=[0.1, 0.3, 3.0, 0.1],
                 cut_bytes={"f32": [12288, 16384, 8192, 4096, 20], "f16": [6144, 8192, 4096, 2048, 20]},
                 branch_ms=2.0, exit_rate=0.7, attach=2)
    choice = plan(Costs(**table), Context(wifi, cloud), Goal("latency"))
    assert choice.plan.branch and choice.plan.a >= 2
    assert abs(choice.exit_ms - (1.0 + 3.0 + 2.0)) < 1e-9


def test_the_context_routes_the_blocks_before_the_attach_point_apart():
    _, manifest = model()
    hello = {"edge_block_ms": [0.1] * 4}
    context = ContextTracker(manifest, hello, conv1_ms=None, branch_ms=2.0, macs_per_ms=100_000)
    for k in range(4):
        context.on_block(k, 1.0, ORT)
        context.on_block(k, 5.0, NUMPY)
    assert context.route(4, branch=False) == [Segment(ORT, 0, 4)]
    assert context.route(4, branch=True) == [Segment(ORT, 0, 2), Segment(ORT, 2, 4)]
    runs = context.device_run_ms(4, branch=True)
    assert runs[:2] == [None, None] and abs(runs[2] - 2.0) < 1e-9 and abs(runs[4] - 4.0) < 1e-9
    assert context.costs(4).attach == 2
    context.on_device({"branch_ms": 6.0})
    assert abs(context.device_slowdown - 3.0) < 1e-9  # no conv1 in the bundle: the branch's times tell
