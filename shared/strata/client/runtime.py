"""The client runtime: one model, one link to the edge, the context, and the plan in force.

This is what a device runs to classify through Strata, in the browser's Web Worker and
in CPython alike: all I/O goes through a Transport (strata.client.transport).

    Client.load()   manifest, browser bundle, samples, edge link (the device profile
                    waits for the planner's first context, after the first answer)
    start()         keep the link up; probe every period (strata.client.prober)
    classify()      one image through the current plan: the device's share
                    (strata.device), the offload, the fallbacks, learning from it
    set_goal(), set_plan()   the user's goal, or a plan fixed by hand

Privacy is a promise kept here first: while the goal says raw input never leaves this
device, no plan with a = 0 runs, whether the planner or a person chose it, and the link
marks its session private (`?private=1`) so the edge refuses such a plan too.
Times are milliseconds.

This module is over 400 lines on purpose: the request path (begin, resume, complete,
the fallbacks, learning from offloads) reads and updates every part of the client's
state (the plan in force, the context, the device's executors, the link), so it stays in
the one class rather than passing the whole client to another module. The pieces with
their own job live beside it: prober.py, device_blocks.py, link.py, profile.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from strata import device
from strata.client.device_blocks import DeviceBlocks
from strata.client.link import EdgeLink
from strata.client.pictures import class_names
from strata.client.prober import Prober
from strata.client.profile import DeviceProfile
from strata.client.transport import FloatSession, Transport
from strata.codecs import CODECS, encode_tensor
from strata.context import ContextTracker
from strata.device import Answer
from strata.bundle import attach_point
from strata.device_route import NUMPY, ORT, Segment
from strata.executor import BrowserModel, load_browser_model
from strata.offload import InferRequest, RequestError, infer_frame, read_result
from strata.plan import Plan, PlanError, default_plan
from strata.planner import Choice, Goal, Replanner, evaluate, frame_fits
from strata.planner import plan as best_plan
from strata.probes import transfer_rate_bps

# The fast float executor's speed over numpy's, assumed only to decide whether loading it
# could pay off at all (the notes measured 10-15x for onnxruntime-web); plans then use
# measured times.
ORT_SPEEDUP_PRIOR = 10.0
PRIVACY = "privacy: raw input never leaves this device, so the plan must keep block 0 here (a >= 1)"


@dataclass(frozen=True)
class Stretch:
    """Blocks [start, stop) for one call of the fast float executor, on x."""

    session: FloatSession
    x: np.ndarray
    start: int
    stop: int
    started: float  # clock() when the step asked for the call


@dataclass
class Step:
    """One image part-way through the client (see Client.begin)."""

    request_id: int
    pending: device.Pending
    plan: Plan
    forecast: Choice | None
    route: list[Segment] = dataclasses.field(default_factory=list)  # how the device runs its blocks
    segments: list[Segment] | None = None  # the device's blocks still to run, if any
    stretch: Stretch | None = None  # set: the fast executor runs this next, in one call
    classified: Classified | None = None  # set: the answer, nothing more to do


@dataclass(frozen=True)
class Classified:
    """One image's answer, the plan that produced it, and what the planner forecast for it."""

    answer: Answer
    plan: Plan
    forecast: Choice | None

    def to_dict(self) -> dict:
        return {**self.answer.to_dict(), "plan": self.plan.to_header(),
                "predicted_ms": self.forecast.predict(self.answer.exited) if self.forecast else None,
                "predicted_mj": self.forecast.energy_mj if self.forecast else None}


class Client:
    """The model, the link, the context and the plan of one device.

    `model` is the browser bundle (conv1 and the binary branch), or None for a model made
    by `strata split`: then every block is a float block, the device runs them from block
    0 in the fast float executor, and the shipped samples are already input tensors. A
    split model that `strata branch` gave a branch has a bundle without conv1: its blocks
    are float blocks too, and the branch runs on the input of block `attach`.
    """

    def __init__(self, transport: Transport, edge_url: str, manifest: dict, model: BrowserModel | None,
                 samples: tuple[np.ndarray, np.ndarray], ort_assets: dict | None = None,
                 profile: DeviceProfile | None = None) -> None:
        """`profile`: this device's speed if already measured (clients of one device share it)."""
        self.transport, self.manifest, self.model = transport, manifest, model
        self.link = EdgeLink(transport, edge_url)
        self.ort_assets = ort_assets or {}
        self.variants: dict[str, tuple[dict, str]] = {}  # pruned variant -> (its manifest, its folder's path)
        self.variants_requested = False
        self.first_float = 1 if model is not None and model.holds_conv1 else 0  # the device's first block beyond the bundle
        self.attach = attach_point(manifest)  # the branch reads this block's input; None: no branch
        self.attach_shape = None if self.attach is None else manifest["blocks"][self.attach]["input_shape"]
        self.images, self.labels = samples
        self.blocks = len(manifest["blocks"])
        self.classes = class_names(manifest)
        self.output_kind = manifest.get("output", {}).get("kind", "logits")  # how answers read the output
        self.next_id = 0
        self.goal = Goal("latency")
        self.manual: Plan | None = None  # a plan fixed by hand, or None to follow the planner
        self.offered: set[str] | None = None  # variant names the planner may choose from; None: all served
        self.replanner = Replanner()
        self.context: ContextTracker | None = None  # once the edge said HELLO (see Prober)
        self.devices: dict[str, DeviceBlocks] = {}  # variant -> its float blocks, see device()
        self._profile = profile
        self.last_request_at = 0.0  # clock() at the last classify
        self.prober = Prober(self)
        self._planned: dict[Plan, tuple[list[Segment], Choice | None]] = {}  # made at the last re-plan
        self._tasks: list[asyncio.Future] = []

    @property
    def profile(self) -> DeviceProfile:
        """This device's speed, measured when first needed: by the prober's first context,
        which comes after the first answer, not in front of it (about 0.1-0.4 s)."""
        if self._profile is None:
            self._profile = DeviceProfile.measure(self.model, self.images, self.attach_shape)
        return self._profile

    @classmethod
    async def load(cls, transport: Transport, edge_url: str) -> Client:
        """Fetch and verify what the edge serves (manifest, browser bundle, samples), the
        independent files at once. Raise RuntimeError or ConnectionError if the edge cannot serve it."""
        (manifest, _), (npz, _), (assets, _) = await asyncio.gather(*(
            transport.fetch(path) for path in ("/models/manifest.json", "/models/samples.npz", "/assets.json")))
        manifest = json.loads(manifest)
        model = None
        if "browser_bundle" in manifest:  # absent for a model made by `strata split`
            bundle = manifest["browser_bundle"]["file"]
            model = load_browser_model(manifest, {bundle: (await transport.fetch(f"/models/{bundle}"))[0]})
        with np.load(io.BytesIO(npz)) as shipped:
            images = shipped["images"]  # a model that is not a classifier ships no labels: -1
            samples = images, shipped["labels"] if "labels" in shipped.files else np.full(len(images), -1)
        return cls(transport, edge_url, manifest, model, samples, json.loads(assets).get("ort"))

    def start(self, probes: bool = True) -> None:
        """Keep the link to the edge up and, unless `probes` is False (a plan fixed by hand
        needs none), probe it every period, in the background."""
        self._tasks = [asyncio.ensure_future(self.link.run())]
        if probes:
            self._tasks.append(asyncio.ensure_future(self.prober.run()))

    async def close(self) -> None:
        """Stop the background work and close the link. The loops also stop by flag:
        before Python 3.12, asyncio.wait_for can swallow a cancellation that meets a
        reply arriving at the same moment, and a loop would then go on forever."""
        self.prober.stopped = True
        self.link.stop()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    # -- the goal and the plan -----------------------------------------------------------
    def current_plan(self) -> Plan:
        if self.manual is not None:
            return self.manual
        if self.replanner.current is not None and self.replanner.current.plan is not None:
            return self.replanner.current.plan
        return default_plan(self.blocks, self.attach)

    def set_plan(self, plan: Plan | None) -> Plan:
        """Fix the plan by hand, or hand the choice back to the planner (None). Raise
        PlanError if it does not fit the model, breaks the privacy promise, or would send
        an INFER frame larger than the edge accepts (once its HELLO said its limit)."""
        if plan is not None:
            plan.check(self.blocks, self.attach or 1)
            if self.goal.privacy and plan.a == 0:
                raise PlanError(f"refused: {PRIVACY}; got a=0. Turn privacy off to upload raw input.")
            self._check_frame(plan)
        self.manual = plan
        self.replan()
        return self.current_plan()

    def _check_frame(self, plan: Plan) -> None:
        """PlanError if one sample's INFER frame under the plan could exceed the edge's frame limit."""
        if self.context is None or plan.variant not in self.context.variants:
            return  # no HELLO yet (or the variant's manifest is not loaded): the link still sends nothing larger
        costs = self.context.costs(self.blocks, plan.variant)
        if not frame_fits(costs, plan.codec)[plan.a]:
            raise PlanError(f"refused: at a={plan.a} an INFER frame under {plan.codec} takes up to "
                            f"{costs.frame_bytes[plan.codec][plan.a]:,} bytes, over the edge's frame limit of "
                            f"{costs.max_frame_bytes:,} bytes (max_frame_bytes in its HELLO, `strata serve "
                            f"--max-frame-bytes`); choose another cut or a smaller codec")

    def set_goal(self, goal: Goal, variants: set[str] | None = None) -> Plan:
        """The user's goal; `variants` limits the model variants offered to the planner
        ("" is the unpruned model; None: every variant the edge serves). Turning privacy
        on clamps a plan fixed by hand at a = 0 to a = 1, and says so."""
        clamped = None
        if goal.privacy and self.manual is not None and self.manual.a == 0:
            self.manual = dataclasses.replace(self.manual, a=1, b=max(self.manual.b, 1))
            clamped = f"the plan fixed by hand sent raw input (a=0); now a=1 ({PRIVACY})"
        self.goal, self.offered = goal, variants
        self._mark_session_private(goal.privacy)
        if (goal.kind == "accuracy" or bool(variants and variants - {""})) and not self.variants_requested:
            self.variants_requested = True
            asyncio.ensure_future(self.load_variants())
        self.replan(clamped)
        return self.current_plan()

    def _mark_session_private(self, private: bool) -> None:
        """The edge learns privacy from the WebSocket URL: reconnect if it changed."""
        parts = urlsplit(self.link.url)
        query = {k: v for k, v in parse_qsl(parts.query) if k != "private"}
        if private:
            query["private"] = "1"
        url = urlunsplit(parts._replace(query=urlencode(query)))
        if url != self.link.url:
            self.link.reconnect(url)

    def replan(self, note: str | None = None) -> None:
        """Choose the plan for the current context and goal, and tell the application."""
        self._planned.clear()
        if self.context is None:
            return
        previous = self.current_plan()
        variants = {name: costs for name, costs in self.context.all_costs(runnable=self.blocks).items()
                    if self.offered is None or name in self.offered}  # none left: the unpruned model
        choice = self.replanner.update(variants or self.context.costs(self.blocks), self.context.context(), self.goal)
        plan = self.current_plan()
        device_blocks = self.device(plan.variant)
        if not device_blocks.ort_requested and (plan.a > self.first_float or self._ort_could_pay()):
            asyncio.ensure_future(self._load_ort(device_blocks))
        route, forecast = self.planned(plan)
        for segment in route:
            if segment.executor == ORT:
                device_blocks.join(segment.start, segment.stop)
        shown = choice if self.manual is None else forecast  # the forecast is for the plan in force
        self.transport.notify("plan", {
            "plan": plan.to_header(), "auto": self.manual is None,
            "predicted_ms": shown and shown.latency_ms, "energy_mj": shown and shown.energy_mj,
            "accuracy": shown and shown.accuracy, "meets_budget": shown and shown.meets_budget,
            "reason": "; ".join(filter(None, [note, choice.reason if self.manual is None else ""])),
            "changed": plan != previous,
            "context": self.context.describe(), "executors": self.executors(route)})

    def route(self, plan: Plan) -> list[Segment]:
        """How the device runs its blocks [0, a) of a plan (strata.device_route)."""
        if self.context is not None and plan.variant in self.context.variants:
            return self.context.route(plan.a, plan.branch, plan.variant)
        return [Segment(NUMPY, 0, plan.a)] if plan.a else []

    def executors(self, route: list[Segment]) -> list[str | None]:
        """Per block, the executor the device runs it in under `route`, or None off the device."""
        table: list[str | None] = [None] * self.blocks
        for segment in route:
            table[segment.start:segment.stop] = [segment.executor] * (segment.stop - segment.start)
        return table

    def planned(self, plan: Plan) -> tuple[list[Segment], Choice | None]:
        """The device's route for a plan and the planner's forecast for it (None without a
        context), as of the last re-plan: a request pays for neither."""
        if plan not in self._planned:
            forecast = None
            if self.context is not None and plan.variant in self.context.variants:
                forecast = evaluate(plan, self.context.costs(self.blocks, plan.variant), self.context.context(),
                                    self.goal)
            self._planned[plan] = self.route(plan), forecast
        return self._planned[plan]

    # -- the device's blocks -------------------------------------------------------------
    def device(self, variant: str) -> DeviceBlocks:
        """The device's float blocks of a variant, created when a plan first names it."""
        if variant not in self.devices:
            manifest, path = (self.manifest, "/models/") if variant == "" else self.variants[variant]

            def report(k: int, ms: float, executor: str) -> None:
                if self.context is not None:
                    self.context.on_block(k, ms, executor, variant)

            def report_session(start: int, stop: int, ms: float) -> None:
                if self.context is not None:
                    self.context.on_session(start, stop, ms, variant)

            self.devices[variant] = DeviceBlocks(manifest, variant, path, self.first_float, self.transport.fetch,
                                                 lambda: self.transport.float_executor(self.ort_assets),
                                                 report, report_session)
        return self.devices[variant]

    def _ort_could_pay(self) -> bool:
        """Would some plan run float blocks on the device if they ran ORT_SPEEDUP_PRIOR
        times faster? Only then is the fast executor worth loading and timing."""
        costs = self.context.costs(runnable=self.blocks)
        hoped = [ms if k < self.first_float or ms is None else ms / ORT_SPEEDUP_PRIOR
                 for k, ms in enumerate(costs.device_ms)]
        choice = best_plan(dataclasses.replace(costs, device_ms=hoped, device_run_ms=None, device_run_branch_ms=None),
                           self.context.context(), self.goal)
        return choice.plan is not None and choice.plan.a > self.first_float

    async def _load_ort(self, device_blocks: DeviceBlocks) -> None:
        self.transport.notify("executor", {"state": "loading"})
        await device_blocks.load_ort()
        self.transport.notify("executor", {"state": "failed" if device_blocks.ort is None else "ready",
                                           "detail": device_blocks.ort_error or ""})
        # Learn what one call into the executor costs from the two cheapest blocks joined
        # (the planner assumes nothing until then); replan() joins what the plan runs.
        if device_blocks.ort is not None and device_blocks.count >= 2:
            smallest = min(range(device_blocks.count - 1), key=lambda k: sum(
                block["bytes"] for block in device_blocks.manifest["blocks"][k:k + 2]))
            device_blocks.join(smallest, smallest + 2)
        self.replan()

    async def load_variants(self) -> None:
        """The pruned variants' manifests (small; their blocks load only if a plan runs them
        here), each checked against the sha256 the model's manifest gives for it. Only the
        accuracy goal plans with variants, so they are fetched when it (or a variant by
        name) is first asked for, not before the first answer."""
        for entry in self.manifest.get("variants", []):
            path = f"/models/{entry['dir']}/"
            data, _ = await self.transport.fetch(path + "manifest.json")
            if hashlib.sha256(data).hexdigest() != entry["manifest_sha256"]:
                self.transport.notify("edge", {"state": "error", "detail": f"{path}manifest.json does not match its "
                                                                           f"sha256; variant {entry['name']} is not offered"})
                continue
            self.variants[entry["name"]] = (json.loads(data), path)
            if self.context is not None:
                self.context.add_variant(entry["name"], self.variants[entry["name"]][0])
        self.replan()

    def measure_compression(self, count: int = 5) -> None:
        """What zlib gains on real tensors at the cuts the device can send (the raw input
        and, from a bundle that holds it, conv1's output), so the planner can weigh the
        "+z" codecs from the start."""
        images = self.images[:count]
        tensors = {0: device.model_input(self.model, images)}
        if self.model is not None and self.model.holds_conv1:
            tensors[1] = self.model.conv1(images)
        for cut, x in tensors.items():
            for codec in CODECS:
                if codec.endswith("+z"):
                    raw = len(encode_tensor(x, codec[:-2])[1])
                    self.context.on_compression(cut, codec, raw, len(encode_tensor(x, codec)[1]))

    # -- one image -----------------------------------------------------------------------
    def begin(self, image: np.ndarray) -> Step:
        """The device's share of one image, as far as it runs without waiting: conv1, the
        branch and numpy blocks, synchronously. The Step says what comes next: nothing (an
        answer), one call into the fast executor (resume() takes its output), the offload
        (send()), or, while a block or the executor still loads, the rest of the device's
        share asynchronously (classify() does all of it). `image` is what the shipped
        samples hold: uint8 pixels at the manifest's input.raw_size or, for a model made by
        `strata split`, the input tensor of one sample (without the batch)."""
        plan = self.current_plan()
        if self.goal.privacy and plan.a == 0:  # set_plan and set_goal never let this happen
            raise PlanError(f"refused: {PRIVACY}")
        route, forecast = self.planned(plan)
        self.next_id += 1
        self.last_request_at = self.transport.clock()
        conv1 = not route or route[0].executor == NUMPY  # else conv1 runs with the blocks after it
        pending = device.start(self.model, image, plan, self.next_id, self.blocks, conv1=conv1, kind=self.output_kind)
        return self._device_share(Step(self.next_id, pending, plan, forecast, route))

    def _device_share(self, step: Step) -> Step:
        """The device's blocks the pending sample asks for next, as far as they run without
        waiting (see begin)."""
        if step.pending.blocks is None:
            return self._settled(step)
        start, stop = step.pending.blocks
        step.segments = [Segment(s.executor, max(s.start, start), min(s.stop, stop))
                         for s in step.route if s.start < stop and s.stop > start]
        ready = self.device(step.plan.variant).run_ready(step.pending.block_input, step.segments)
        if ready is None:
            return step  # not ready: classify() runs the device's share, loading what it needs
        x, session = ready
        if session is None:
            return self._after_blocks(step, x)
        step.stretch = Stretch(session, x, step.segments[-1].start, step.segments[-1].stop, self.transport.clock())
        return step

    def resume(self, step: Step, y: np.ndarray) -> Step:
        """The fast executor ran the step's stretch and gave `y`."""
        stretch, step.stretch = step.stretch, None
        self.device(step.plan.variant).report_session(
            stretch.start, stretch.stop, (self.transport.clock() - stretch.started) * 1000)
        return self._after_blocks(step, y)

    def _after_blocks(self, step: Step, x: np.ndarray) -> Step:
        """The device's blocks ran: the branch may run next, then more blocks (a second stretch)."""
        step.segments = None
        step.pending = device.after_blocks(step.pending, x, step.plan, step.request_id, self.blocks, self.model)
        return self._device_share(step)

    def _settled(self, step: Step) -> Step:
        """The device's share is done: learn its times; the answer, or the offload, is next."""
        pending = step.pending
        if self.context is not None:
            self.context.on_device(pending.answer.timing if pending.answer else pending.timing)
        if pending.answer is not None:
            step.classified = Classified(pending.answer, step.plan, step.forecast)
            if pending.answer.exited:
                self.prober.exits += 1  # the edge counts them in its metrics: the next ping tells it
        return step

    async def classify(self, image: np.ndarray) -> Classified:
        """One image through the current plan: begin(), then complete()."""
        return await self.complete(self.begin(image))

    async def complete(self, step: Step) -> Classified:
        """Whatever a step still needs, awaited: the fast executor's call, or the device's
        blocks once they load, then the offload; its answer. (The browser's worker makes
        the fast executor's call itself, without Python's event loop, and resumes.)"""
        while step.stretch is not None or step.segments is not None:
            if step.stretch is not None:
                step = self.resume(step, await step.stretch.session(step.stretch.x))
            else:
                x = await self.device(step.plan.variant).run(step.pending.block_input, step.segments)
                step = self._after_blocks(step, x)
        return step.classified or await self._send(step.pending, step.plan, step.forecast)

    async def offload(self, x: np.ndarray, plan: Plan) -> Classified:
        """Send what the device computed elsewhere, the input of block plan.a for one
        sample (float32, without the batch), and await the answer: classify() without
        the device's share. The load benchmark drives the edge this way. It falls back on
        the device as classify() does when it can (a bundle at a = its attach point, or a
        split model);
        otherwise a failed edge raises ConnectionError, TimeoutError or RequestError."""
        self.next_id += 1
        started = self.transport.clock()
        x = np.asarray(x, np.float32)[None]
        features = x if self.model is not None and plan.a == self.model.attach else None
        pending = device.Pending(None, InferRequest(self.next_id, plan, x), None, None, features, started,
                                 kind=self.output_kind)
        return await self._send(pending, plan, self.planned(plan)[1], fall_back=features is not None or self.model is None)

    async def _send(self, pending: device.Pending, plan: Plan, forecast: Choice | None,
                    fall_back: bool = True) -> Classified:
        """The offload of a pending sample: the answer the edge sends, or the device's."""
        try:
            reply, up_bytes, down_bytes = await self.link.exchange(("infer", pending.request.request_id),
                                                                   infer_frame(pending.request))
            result = read_result(reply)
        except (ConnectionError, asyncio.TimeoutError) as exc:
            if not fall_back:
                raise
            return Classified(await self._fall_back(pending, plan, f"edge-unreachable: {exc or 'no reply in time'}"),
                              plan, forecast)
        except RequestError as exc:
            if not fall_back:
                raise
            return Classified(await self._fall_back(pending, plan, f"edge-error: {exc.code}: {exc}"), plan, forecast)
        rtt = self.context.rtt.value if self.context else None
        answer = device.finish(pending, result, up_bytes, down_bytes, rtt)
        if self.context is not None:
            self._learn(answer, rtt)
        expected = forecast.offload_ms if forecast else None
        if expected and answer.timing["total_ms"] > 2 * expected + 20:
            self.prober.wake.set()  # the link changed under us: probe now rather than at the next period
        return Classified(answer, plan, forecast)

    async def _fall_back(self, pending: device.Pending, plan: Plan, reason: str) -> Answer:
        """The edge failed us: the branch answers, or with no bundle, the device runs the rest."""
        logits = pending.branch_logits
        if logits is None and self.model is None:
            logits = await self.device(plan.variant).run(pending.request.tensor, [Segment(ORT, plan.a, self.blocks)])
        elif logits is None:
            features = pending.features
            if features is None and self.model.holds_conv1:
                features = self.model.conv1(pending.image)
            elif features is None:  # the branch's input: the device's blocks before it, on the model's input
                route = self.route(dataclasses.replace(plan, a=self.model.attach, branch=True))
                features = await self.device(plan.variant).run(pending.image, route)
            logits = self.model.branch_logits(features)
        return device.fall_back(pending, reason, logits)

    def _learn(self, answer: Answer, rtt: float | None) -> None:
        """Passive measurements from an offload: link rates and the edge's state."""
        timing = answer.timing
        half_rtt_s = (rtt or 0.0) / 2000
        self.context.on_rate("up", transfer_rate_bps(timing["up_bytes"], timing["uplink_ms"] / 1000, half_rtt_s))
        self.context.on_rate("down", transfer_rate_bps(timing["down_bytes"], timing["downlink_ms"] / 1000, half_rtt_s))
        self.context.on_edge(timing)

    # -- what the application shows ----------------------------------------------------------
    def explain(self) -> dict:
        """The planner's inputs and its current choice, for the page and for debugging."""
        if self.context is None:
            return {"ready": False}
        costs = self.context.costs(runnable=self.blocks)
        context = self.context.context()
        best = best_plan(costs, context, self.goal)
        current = self.replanner.current
        plan = self.current_plan()
        route = self.route(plan)
        device_blocks, base = self.device(plan.variant), self.device("")
        return {"ready": True, "device_ms": costs.device_ms, "edge_ms": costs.edge_ms, "cloud_ms": costs.cloud_ms,
                "branch_ms": costs.branch_ms, "exit_rate": costs.exit_rate,
                "edge_link": None if context.edge is None else vars(context.edge),
                "cloud_link": None if context.cloud is None else vars(context.cloud),
                "device_slowdown": context.device_slowdown, "edge_slowdown": context.edge_slowdown,
                "variant": plan.variant, "variants": self.context.variants,
                "executors": self.executors(route),
                "device_block_ms": {str(k): v for k, v in self.context.device_block_ms.get("", {}).items()},
                "session_ms": self.context.session.value,
                "joined": [list(key) for key in device_blocks.joined],
                "join_errors": {f"{start}-{stop}": why for (start, stop), why in device_blocks.join_errors.items()},
                "route_ready": device_blocks.joined_for(route),
                "ort": {"requested": base.ort_requested, "ready": base.ort is not None, "error": base.ort_error},
                "choice": None if current is None else {"plan": current.plan.to_header() if current.plan else None,
                                                        "latency_ms": current.latency_ms, "exit_ms": current.exit_ms,
                                                        "offload_ms": current.offload_ms},
                # The planner's whole input for the unpruned model, and its choice for it now
                # without the hysteresis that may keep an older plan: any copy of the
                # planner (strata.planner.plan) can check it.
                "inputs": {"costs": dataclasses.asdict(costs), "context": dataclasses.asdict(context),
                           "goal": {"kind": self.goal.kind, "budget_ms": self.goal.budget_ms,
                                    "privacy": self.goal.privacy}},
                "best": None if best.plan is None else best.plan.to_header()}
