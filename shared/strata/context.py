"""What the worker knows about its context, as the planner's inputs.

The worker feeds this tracker with what it measures (pings, probe transfers, its own
compute times, what the edge reports) and asks it for the planner's Costs and Context.
It holds no clock and does no I/O, so tests drive it with numbers.
"""

from __future__ import annotations

from strata.codecs import CODECS, encoded_bytes
from strata.planner import Context, Costs, Link
from strata.probes import StepTracker, WindowedMedian

FRAME_OVERHEAD = 200  # preamble and JSON header of an INFER or RESULT frame, roughly


class ContextTracker:
    def __init__(self, manifest: dict, hello: dict, conv1_ms: float, branch_ms: float | None,
                 macs_per_ms: float) -> None:
        self.manifest, self.hello = manifest, hello
        self.blocks = manifest["blocks"]
        self.conv1_profile_ms = conv1_ms
        self.macs_per_ms = macs_per_ms  # the device's matmul speed, for blocks not yet measured
        self.branch_ms = branch_ms
        self.device_block_ms: dict[int, float] = {0: conv1_ms}  # measured; others estimated from MACs
        self.conv1_recent = WindowedMedian(window=8)
        self.branch_recent = WindowedMedian(window=8)
        self.rtt = StepTracker(window=16)
        self.up, self.down = StepTracker(), StepTracker()
        self.edge_queue = WindowedMedian(window=8)
        self.z_ratio: dict[int, dict[str, float]] = {}  # cut -> base codec -> compression ratio seen
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

    def on_block(self, index: int, ms: float) -> None:
        """A measured device time for a main-path block (replaces the MAC-based estimate),
        stored at profile speed so that the current slowdown applies to it like to the rest."""
        self.device_block_ms[index] = ms / self.device_slowdown

    def on_compression(self, cut: int, codec: str, raw_bytes: int, sent_bytes: int) -> None:
        base = codec.split("+")[0]
        if codec.endswith("+z") and sent_bytes > 0:
            self.z_ratio.setdefault(cut, {})[base] = raw_bytes / sent_bytes

    def on_edge(self, report: dict) -> None:
        """What the edge says in a PONG or a RESULT: its queue and its link to the cloud."""
        if "edge_queue_ms" in report:
            self.edge_queue.add(report["edge_queue_ms"])
        if report.get("cloud_link"):
            self.hello = {**self.hello, "cloud_link": report["cloud_link"]}

    # -- what the planner needs ----------------------------------------------------------
    @property
    def device_slowdown(self) -> float:
        """How much slower the device is now than when it was profiled, from conv1's times."""
        recent = self.conv1_recent.value
        return max(recent / self.conv1_profile_ms, 0.1) if recent and self.conv1_profile_ms > 0 else 1.0

    def device_ms(self, runnable: int) -> list[float | None]:
        """Per-block device times now: conv1 as recently measured; other blocks as measured
        or estimated (MACs over the matmul speed) at profile time, scaled by the slowdown;
        None past the blocks this device can run."""
        slowdown = self.device_slowdown
        return [None if k >= runnable else
                (self.conv1_recent.value if k == 0 and self.conv1_recent.value is not None else
                 self.device_block_ms.get(k, block["macs"] / self.macs_per_ms) * (slowdown if k else 1.0))
                for k, block in enumerate(self.blocks)]

    def cut_bytes(self) -> dict[str, list[int]]:
        shapes = [block["input_shape"] for block in self.blocks] + [self.blocks[-1]["output_shape"]]
        table = {}
        for codec in CODECS:
            base = codec.split("+")[0]
            table[codec] = [encoded_bytes(codec, shape, self.z_ratio.get(k, {}).get(base, 1.0)) + FRAME_OVERHEAD
                            for k, shape in enumerate(shapes)]
        return table

    def costs(self, runnable: int) -> Costs:
        figures = self.manifest["test"]
        edge_ms = self.hello["edge_block_ms"]
        return Costs(
            device_ms=self.device_ms(runnable), edge_ms=edge_ms,
            cloud_ms=self.hello.get("cloud_block_ms") or edge_ms,
            cut_bytes=self.cut_bytes(),
            branch_ms=None if self.branch_ms is None else self.branch_recent.value or self.branch_ms * self.device_slowdown,
            exit_rate=figures["exit_rate"], accuracy=figures["main_accuracy"],
            branch_accuracy=figures["system_accuracy"],
        )

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

