"""The worker's context tracker. Runs in CPython (pytest) and inside Pyodide."""

from strata.context import FRAME_OVERHEAD, ContextTracker
from strata.device_route import NUMPY, ORT, Segment
from strata.planner import Goal, plan

MANIFEST = {
    "blocks": [
        {"input_shape": [1, 32, 32], "output_shape": [32, 16, 16], "macs": 300_000},
        {"input_shape": [32, 16, 16], "output_shape": [64, 8, 8], "macs": 4_800_000},
        {"input_shape": [64, 8, 8], "output_shape": [10], "macs": 640},
    ],
    "test": {"exit_rate": 0.6, "main_accuracy": 0.93, "system_accuracy": 0.927},
}
HELLO = {"edge_block_ms": [0.05, 0.3, 0.01], "cloud": True, "cloud_block_ms": [0.05, 0.3, 0.01],
         "cloud_link": {"rtt_ms": 20.0, "up_bps": 1e8, "down_bps": 1e8}}


def tracker():
    context = ContextTracker(MANIFEST, HELLO, conv1_ms=2.0, branch_ms=4.0, macs_per_ms=300_000)
    context.on_rtt(10.0)
    context.on_rate("up", 20e6)
    context.on_rate("down", 40e6)
    return context


def test_device_times_scale_by_macs_until_measured():
    context = tracker()
    assert context.device_ms(runnable=2) == [2.0, 16.0, None]
    context.on_block(1, 12.0)
    assert context.device_ms(runnable=3)[1] == 12.0


def test_each_block_counts_in_its_fastest_measured_executor():
    context = tracker()
    assert context.route(3, branch=False) == [Segment(NUMPY, 0, 3)]
    context.on_block(1, 12.0)
    context.on_block(1, 1.5, ORT)
    context.on_block(2, 3.0)
    context.on_block(2, 4.0, ORT)
    assert context.device_ms(runnable=3)[1:] == [1.5, 3.0]
    # conv1 has no onnxruntime-web time: numpy, then the rest in one call (numpy after
    # onnxruntime-web never pays, so block 2 goes along)
    assert context.route(3, branch=False) == [Segment(NUMPY, 0, 1), Segment(ORT, 1, 3)]
    assert context.device_run_ms(runnable=3) == [0.0, 2.0, 3.5, 7.5]


def test_joined_sessions_teach_the_fixed_cost_of_a_call():
    context = tracker()
    for k, ms in enumerate([0.6, 1.0, 0.5]):
        context.on_block(k, ms, ORT)
    context.on_session(0, 3, 1.3)  # three calls' worth of work in one: 2.1 - 1.3 = 2 x 0.4
    assert abs(context.session.value - 0.4) < 1e-9
    route = context.route(3, branch=False)
    assert route == [Segment(ORT, 0, 3)]  # joined, conv1 too: 1.3 ms, against 2.0 + 1.5 with numpy's conv1
    assert abs(context.device_run_ms(runnable=3)[3] - 1.3) < 1e-9
    # The branch reads conv1's output, so conv1 stays in numpy with it: 2.0 + (1.5 - 0.4)
    assert context.route(3, branch=True) == [Segment(NUMPY, 0, 1), Segment(ORT, 1, 3)]
    assert abs(context.device_run_ms(runnable=3, branch=True)[3] - 3.1) < 1e-9
    costs = context.costs(runnable=3)
    assert plan(costs, context.context(), Goal("latency")).plan.a == 3


def test_cut_bytes_follow_codecs_and_learned_compression():
    context = tracker()
    table = context.cut_bytes()
    assert table["f32"][1] == 32 * 16 * 16 * 4 + FRAME_OVERHEAD
    assert table["f16"][1] == 32 * 16 * 16 * 2 + FRAME_OVERHEAD
    assert table["i8+z"][1] == table["i8"][1]  # nothing learned yet: no gain assumed
    context.on_compression(1, "i8+z", 8192, 2048)
    assert table["i8"][1] - FRAME_OVERHEAD == 4 * (context.cut_bytes()["i8+z"][1] - FRAME_OVERHEAD)


def test_slow_device_and_busy_edge_show_in_the_costs_and_context():
    context = tracker()
    for _ in range(5):
        context.on_device({"conv1_ms": 8.0, "branch_ms": 9.0})
    context.on_edge({"edge_queue_ms": 3.6})
    assert context.device_slowdown == 4.0
    costs = context.costs(runnable=2)
    assert costs.device_ms[:2] == [8.0, 64.0]  # conv1 as measured; block 1 estimated, then slowed down
    assert costs.branch_ms == 9.0
    ctx = context.context()
    assert abs(ctx.edge_slowdown - 11.0) < 1e-9
    assert ctx.edge.rtt_ms == 10.0 and ctx.cloud.rtt_ms == 20.0


def test_without_rates_the_edge_is_not_planned_for():
    context = ContextTracker(MANIFEST, HELLO, conv1_ms=2.0, branch_ms=4.0, macs_per_ms=300_000)
    assert context.context().edge is None
    choice = plan(context.costs(runnable=3), context.context(), Goal("latency"))
    assert choice.plan.a == 3  # everything on the device: the only feasible plan


def test_variants_are_planned_while_the_edge_serves_them():
    pruned = {**MANIFEST, "blocks": [MANIFEST["blocks"][0],
                                     {"input_shape": [32, 16, 16], "output_shape": [32, 8, 8], "macs": 1_200_000},
                                     {"input_shape": [32, 8, 8], "output_shape": [10], "macs": 320}],
              "test": {"exit_rate": 0.6, "main_accuracy": 0.925, "system_accuracy": 0.923}}
    context = ContextTracker(MANIFEST, {**HELLO, "variants": {"p50": {"edge_block_ms": [0.05, 0.1, 0.01]}}},
                             conv1_ms=2.0, branch_ms=4.0, macs_per_ms=300_000)
    context.add_variant("p50", pruned)
    costs = context.all_costs(runnable=3)
    assert list(costs) == ["", "p50"]
    assert costs["p50"].device_ms == [2.0, 4.0, 320 / 300_000] and costs["p50"].accuracy == 0.925
    assert costs["p50"].cut_bytes["f32"][2] == 32 * 8 * 8 * 4 + FRAME_OVERHEAD
    context.on_block(1, 1.0, ORT, variant="p50")
    assert context.route(2, False, "p50")[-1] == Segment(ORT, 1, 2) and context.route(2, False) == [Segment(NUMPY, 0, 2)]
    context.on_edge({"refused_variants": {"p50": "variant 'p50' refused: block1.onnx is missing"}})
    assert list(context.all_costs(runnable=3)) == [""]


def test_cut_bytes_follow_the_dtype_of_each_cut():
    blocks = [{"input_shape": [8, 8, 3], "input_dtype": "uint8", "output_shape": [4, 8, 8], "output_dtype": "float16",
               "macs": 1000},
              {"input_shape": [4, 8, 8], "input_dtype": "float16", "output_shape": [5], "output_dtype": "float16",
               "macs": 100}]
    table = ContextTracker({"blocks": blocks}, HELLO, conv1_ms=None, branch_ms=None, macs_per_ms=1000).cut_bytes()
    assert table["f32"][0] == table["i8"][0] == 8 * 8 * 3 + FRAME_OVERHEAD  # pixels travel as bytes
    assert table["f32"][1] == 256 * 4 + FRAME_OVERHEAD and table["f16"][1] == 256 * 2 + FRAME_OVERHEAD


def test_a_cloud_the_edge_reports_down_is_planned_as_absent_until_it_is_back():
    context = tracker()
    assert context.context().cloud is not None
    context.on_edge({"cloud": False, "edge_queued": 0})  # a PONG from an edge whose cloud hangs
    assert context.context().cloud is None
    choice = plan(context.costs(runnable=3), context.context(), Goal("latency"))
    assert choice.plan.b == 3  # nothing planned for the cloud
    context.on_edge({"cloud": True})
    assert context.context().cloud is not None


def test_the_edges_frame_limit_and_frame_bounds_reach_the_costs():
    context = tracker()
    assert context.costs(runnable=3).max_frame_bytes is None  # an edge that does not say its limit
    context.hello = {**HELLO, "max_frame_bytes": 20_000}
    context.on_compression(1, "f32+z", 32768, 1000)  # zlib did well once: the bound does not count on it
    costs = context.costs(runnable=3)
    assert costs.max_frame_bytes == 20_000
    assert costs.frame_bytes["f32+z"][1] > costs.frame_bytes["f32"][1] >= 32 * 16 * 16 * 4
    assert costs.cut_bytes["f32+z"][1] < 2000
    choice = plan(costs, context.context(), Goal("latency"))
    assert choice.plan.a == 3 or costs.frame_bytes[choice.plan.codec][choice.plan.a] <= 20_000
