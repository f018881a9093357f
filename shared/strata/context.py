"""What the worker knows about its context, as the planner's inputs.

The worker feeds this tracker with what it measures (pings, probe transfers, its own
compute times, what the edge reports) and asks it for the planner's Costs and Context.
It holds no clock and does no I/O, so tests drive it with numbers. It keeps costs for
the unpruned model ("") and for each pruned variant the worker was told of
(add_variant) and the edge serves (its HELLO), for plan_variants().
"""

from __future__ import annotations

import math

from strata.bundle import attach_point
from strata.codecs import CODECS, encoded_bytes
from strata.device_route import NUMPY, ORT, Segment, best_route, run_times, session_cost
from strata.offload import infer_frame_bound
from strata.planner import Context, Costs, Link
from strata.probes import StepTracker, WindowedMedian
from strata.wire import frame_limit

FRAME_OVERHEAD = 200  # preamble and JSON header of an INFER or RESULT frame, roughly
BLOCK_WINDOW = 5  # timings per block and executor whose median stands for it


class ContextTracker:
    def __init__(self, manifest: dict, hello: dict, conv1_ms: float | None, branch_ms: float | None,
                 macs_per_ms: float) -> None:
        """conv1_ms and branch_ms: the browser bundle's times at start-up; conv1_ms None for
        a bundle that holds no conv1 (a branch `strata branch` distilled: the device runs
        the blocks before its attach point from the main path's files, as float blocks),
        both None for a model without a bundle."""
        self.manifest, self.hello = manifest, hello
        self.manifests = {"": manifest}  # variant -> its manifest
        self.attach = attach_point(manifest) or 1  # the branch reads this block's input
        self.conv1_profile_ms = conv1_ms
        self.macs_per_ms = macs_per_ms  # the device's matmul speed, for blocks not yet measured
        self.branch_ms = branch_ms
        # Measured block times per variant and executor ("numpy", "ort"), at profile speed;
        # blocks not measured yet are estimated from their MACs over the numpy matmul speed.
        # Block 0 (conv1) is the same in every variant: its time is the unpruned model's.
        self.device_block_ms: dict[str, dict[int, dict[str, float]]] = {
            "": {} if conv1_ms is None else {0: {"numpy": conv1_ms}}}
        self._block_samples: dict[tuple[str, int, str], WindowedMedian] = {}  # see on_block
        self.conv1_recent = WindowedMedian(window=8)
        self.branch_recent = WindowedMedian(window=8)
        self.rtt = StepTracker(window=16)
        self.up, self.down = StepTracker(), StepTracker()
        self.session = WindowedMedian(window=8)  # fixed cost of one onnxruntime-web call, at profile speed
        self.edge_queue = WindowedMedian(window=8)
        self.z_ratio: dict[int, dict[str, float]] = {}  # cut -> base codec -> compression ratio seen
        self._cut_bytes: dict[str, dict[str, list[int]]] = {}  # variant -> cut_bytes(), until z_ratio changes
        self._frame_bytes: dict[str, dict[str, list[int]]] = {}  # variant -> frame_bytes()
        self.edge_up = True

    # -- what the worker reports ------------------------------------------------------
    def on_rtt(self, ms: float) -> None:
        self.rtt.add(ms)

    def on_rate(self, direction: str, bps: float | None) -> None:
        """A throughput measured by a probe or by an offload ("up" or "down")."""
        if bps is not None and bps > 0:
            (self.up if direction == "up" else self.down).add(bps)

    def on_device(self, timing: dict) -> None:
        """conv1's (and the branch's) time on a real request: how fast the device is now."""
        if "conv1_ms" in timing:
            self.conv1_recent.add(timing["conv1_ms"])
        if "branch_ms" in timing:
            self.branch_recent.add(timing["branch_ms"])

    def add_variant(self, name: str, manifest: dict) -> None:
        """A pruned variant's manifest; it is planned for while the edge serves it."""
        self.manifests[name] = manifest
        self._cut_bytes.pop(name, None)
        self._frame_bytes.pop(name, None)

    def on_block(self, index: int, ms: float, executor: str = "numpy", variant: str = "") -> None:
        """A measured device time for a main-path block in one executor (replaces the
        MAC-based estimate), stored at profile speed so that the current slowdown applies
        to it like to the rest; the median of the last BLOCK_WINDOW, so that one timing
        taken while the device was busy does not decide the route for good. conv1 is the
        same in every variant: kept as the unpruned one's."""
        key = ("" if index == 0 else variant, index, executor)
        samples = self._block_samples.setdefault(key, WindowedMedian(BLOCK_WINDOW))
        samples.add(ms / self.device_slowdown)
        self.device_block_ms.setdefault(key[0], {}).setdefault(index, {})[executor] = samples.value

    def on_session(self, start: int, stop: int, ms: float, variant: str = "") -> None:
        """Blocks [start, stop) ran as one onnxruntime-web call in `ms` (timed after loading,
        or a real request's): how much a call's fixed cost is, against the blocks alone."""
        alone = [self._times(k, variant).get(ORT) for k in range(start, stop)]
        if stop - start >= 2 and None not in alone:
            self.session.add(session_cost(alone, ms / self.device_slowdown))

    def _times(self, index: int, variant: str) -> dict[str, float]:
        return self.device_block_ms.get("" if index == 0 else variant, {}).get(index, {})

    def on_compression(self, cut: int, codec: str, raw_bytes: int, sent_bytes: int) -> None:
        base = codec.split("+")[0]
        if codec.endswith("+z") and sent_bytes > 0:
            self.z_ratio.setdefault(cut, {})[base] = raw_bytes / sent_bytes
            self._cut_bytes.clear()

    def on_edge(self, report: dict) -> None:
        """What the edge says in a PONG or a RESULT: its queue, its link to the cloud,
        whether its cloud is up (a cloud it marked down is planned as absent until it says
        it is back), and variants it refused since its HELLO (their files broke): no
        longer offered."""
        if "edge_queue_ms" in report:
            self.edge_queue.add(report["edge_queue_ms"])
        if report.get("cloud_link"):
            self.hello = {**self.hello, "cloud_link": report["cloud_link"]}
        if type(report.get("cloud")) is bool:
            self.hello = {**self.hello, "cloud": report["cloud"]}
        refused = report.get("refused_variants") or {}
        if set(refused) - set(self.hello.get("refused_variants") or {}):
            variants = {name: v for name, v in (self.hello.get("variants") or {}).items() if name not in refused}
            self.hello = {**self.hello, "variants": variants, "refused_variants": refused}

    @property
    def variants(self) -> list[str]:
        """The variants to plan for: the unpruned model, and those both sides have."""
        served = self.hello.get("variants") or {}
        return [""] + [name for name in self.manifests if name and name in served]

    # -- what the planner needs ----------------------------------------------------------
    @property
    def device_slowdown(self) -> float:
        """How much slower the device is now than when it was profiled, from conv1's times
        (the branch's, for a bundle without conv1)."""
        recent, profiled = ((self.conv1_recent.value, self.conv1_profile_ms) if self.conv1_profile_ms
                            else (self.branch_recent.value, self.branch_ms))
        return max(recent / profiled, 0.1) if recent and profiled else 1.0

    def device_ms(self, runnable: int, variant: str = "") -> list[float | None]:
        """Per-block device times now, each in its fastest executor; None past the blocks
        this device can run."""
        times = self._executor_ms(runnable, variant)
        return [min(times[k].values()) if k < len(times) else None
                for k in range(len(self.manifests[variant]["blocks"]))]

    def _executor_ms(self, runnable: int, variant: str) -> list[dict[str, float]]:
        """Per block, its time now in each executor measured for it: conv1 as recently
        measured, the others at profile time scaled by the slowdown; a block not measured
        yet is estimated in numpy, from its MACs over the matmul speed."""
        slowdown = self.device_slowdown
        blocks = self.manifests[variant]["blocks"]
        table = []
        for k in range(min(runnable, len(blocks))):
            times = {name: ms * slowdown for name, ms in self._times(k, variant).items()}
            if k == 0 and NUMPY in times and self.conv1_recent.value is not None:
                times[NUMPY] = self.conv1_recent.value
            table.append(times or {NUMPY: blocks[k]["macs"] / self.macs_per_ms * slowdown})
        return table

    def route(self, stop: int, branch: bool, variant: str = "") -> list[Segment]:
        """How the device runs blocks [0, stop) now: if the branch runs, the blocks before
        its attach point apart (it reads their output; conv1 in numpy when the bundle
        holds it), then the fastest route (strata.device_route)."""
        _, segments = self._run(self._executor_ms(stop, variant), stop, branch)
        return segments

    @property
    def _session_ms(self) -> float:
        """The fixed cost of one onnxruntime-web call now (0 until a joined run was timed)."""
        return (self.session.value or 0.0) * self.device_slowdown

    def _run(self, times: list[dict[str, float]], stop: int, branch: bool) -> tuple[float, list[Segment]]:
        session = self._session_ms
        if not branch:
            return best_route(times, 0, stop, session)
        head_ms, head = self._head(times)
        ms, segments = best_route(times, self.attach, stop, session)
        return head_ms + ms, [*head, *segments]

    def _head(self, times: list[dict[str, float]]) -> tuple[float, list[Segment]]:
        """How the device runs the blocks before the branch's attach point, in one route of
        their own: conv1 in numpy when the bundle holds it, else the fastest route."""
        head = times[:self.attach]
        if self.conv1_profile_ms is not None:  # the bundle's conv1, in numpy
            head = [{NUMPY: t.get(NUMPY, math.inf)} for t in head]
        if len(head) < self.attach:
            return math.inf, []
        return best_route(head, 0, self.attach, self._session_ms)

    def device_run_ms(self, runnable: int, variant: str = "", branch: bool = False) -> list[float | None]:
        """The device's time for blocks [0, a), a = 0..N, as route() would run them; None
        past the blocks this device can run (or, with the branch, without a bundle)."""
        times = self._executor_ms(runnable, variant)
        count = len(self.manifests[variant]["blocks"]) + 1
        session = self._session_ms
        if not branch:
            runs = run_times(times, 0, session)
        elif self.branch_ms is None or len(times) < self.attach:
            runs = []
        else:
            head_ms = self._head(times)[0]
            runs = [math.inf] * self.attach + [head_ms + ms for ms in run_times(times, self.attach, session)]
        runs += [math.inf] * (count - len(runs))
        return [None if math.isinf(ms) else ms for ms in runs]

    def cut_bytes(self, variant: str = "") -> dict[str, list[int]]:
        """Bytes per sample at each cut, per codec (computed once per compression update:
        the planner asks at every request and re-plan)."""
        if variant not in self._cut_bytes:
            self._cut_bytes[variant] = self._count_cut_bytes(variant)
        return self._cut_bytes[variant]

    def frame_bytes(self, variant: str = "") -> dict[str, list[int]]:
        """The most bytes one sample's INFER frame can take at each cut 0..N-1, per codec
        (strata.offload.infer_frame_bound), to keep plans within the edge's frame limit.
        For "+z" this is zlib's worst case on the uncompressed tensor, not the ratio seen so
        far: the ratio changes with the data, and a frame planned on it could still go over
        (an inflated "+z" tensor then also stays within the edge's max_tensor_bytes)."""
        if variant not in self._frame_bytes:
            shapes, dtypes = self._cuts(variant)
            self._frame_bytes[variant] = {codec: [infer_frame_bound(codec, shape, dtypes[k])
                                                  for k, shape in enumerate(shapes[:-1])] for codec in CODECS}
        return self._frame_bytes[variant]

    def _cuts(self, variant: str) -> tuple[list[list[int]], list[str]]:
        """Each cut's shape (no batch) and dtype: the blocks' inputs, then the output."""
        blocks = self.manifests[variant]["blocks"]
        shapes = [block["input_shape"] for block in blocks] + [blocks[-1]["output_shape"]]
        dtypes = [block.get("input_dtype", "float32") for block in blocks] + [blocks[-1].get("output_dtype", "float32")]
        return shapes, dtypes

    def _count_cut_bytes(self, variant: str) -> dict[str, list[int]]:
        shapes, dtypes = self._cuts(variant)
        table = {}
        for codec in CODECS:
            base = codec.split("+")[0]
            table[codec] = [encoded_bytes(codec, shape, self.z_ratio.get(k, {}).get(base, 1.0), dtypes[k])
                            + FRAME_OVERHEAD for k, shape in enumerate(shapes)]
        return table

    def costs(self, runnable: int, variant: str = "") -> Costs:
        figures = self.manifests[variant].get("test", {})  # a split model has no accuracy figures
        served = self.hello if not variant else self.hello["variants"][variant]
        edge_ms = served["edge_block_ms"]
        return Costs(
            device_ms=self.device_ms(runnable, variant), edge_ms=edge_ms,
            device_run_ms=self.device_run_ms(runnable, variant),
            device_run_branch_ms=self.device_run_ms(runnable, variant, branch=True),
            cloud_ms=served.get("cloud_block_ms") or edge_ms,
            cut_bytes=self.cut_bytes(variant),
            branch_ms=None if self.branch_ms is None else self.branch_recent.value or self.branch_ms * self.device_slowdown,
            exit_rate=figures.get("exit_rate", 0.0), attach=self.attach, accuracy=figures.get("main_accuracy", 1.0),
            branch_accuracy=figures.get("system_accuracy", 1.0),
            max_frame_bytes=frame_limit(self.hello), frame_bytes=self.frame_bytes(variant),
        )

    def all_costs(self, runnable: int) -> dict[str, Costs]:
        """Costs of every variant to plan for, by name."""
        return {name: self.costs(runnable, name) for name in self.variants}

    def context(self) -> Context:
        rtt = self.rtt.value
        edge = None
        if self.edge_up and rtt is not None and self.up.value and self.down.value:
            edge = Link(rtt, self.up.value, self.down.value)
        cloud = None
        link = self.hello.get("cloud_link") or {}
        if self.hello.get("cloud") and link.get("rtt_ms") is not None:
            cloud = Link(link["rtt_ms"], link.get("up_bps") or 1e9, link.get("down_bps") or 1e9)
        # Waiting in the edge's queue stretches its share of the work; as a factor on its blocks.
        queue = self.edge_queue.value or 0.0
        # The device's slowdown is already in costs(): the times there are current ones.
        return Context(edge, cloud, edge_slowdown=1.0 + queue / max(sum(self.hello["edge_block_ms"]), 1e-3))

    def describe(self) -> dict:
        """The figures the page plots."""
        return {"rtt_ms": self.rtt.value, "up_bps": self.up.value, "down_bps": self.down.value,
                "device_slowdown": self.device_slowdown, "edge_queue_ms": self.edge_queue.value or 0.0}

