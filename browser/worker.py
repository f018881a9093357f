"""Python in the browser's Web Worker: the bridge from strata to the browser's APIs.

Everything that does not touch a browser API lives in the strata package (shared with
the servers and tested in CPython and in Pyodide); this file wires it to the JS
WebSocket, to fetch, and to the page. worker.js calls the functions at the bottom.

    load_model()  bundle, samples, device profile, edge link, probe loop
    classify_*()  one image through the current plan (the planner's, or the page's)
    probe loop    every probe period (PROBE_PERIOD_S, or set_probe_period()): RTT, an
                  uplink and a downlink probe, then re-plan

The device's float blocks live in device_blocks.py (numpy or onnxruntime-web, through
ort_web.py); worker.js writes both files next to this one.
"""

import asyncio
import dataclasses
import hashlib
import io
import json
import sys
import time

import js
import numpy as np
from pyodide.ffi import create_proxy, to_js
from pyodide.http import pyfetch

import strata
from strata import device, wire
from strata.codecs import CODECS, encode_tensor
from strata.context import ContextTracker
from strata.device_route import NUMPY, ORT, Segment
from strata.executor import load_browser_model
from strata.offload import RequestError, infer_frame, read_result
from strata.plan import Plan, default_plan
from strata.planner import Goal, Replanner, evaluate, plan as best_plan
from strata.preprocess import prepare
from strata.probes import probe_bytes, transfer_rate_bps
from strata.wire import MessageType

from device_blocks import DeviceBlocks

REPLY_TIMEOUT_S = 5.0  # past this, the branch answers instead of the edge
BACKOFF_S = [0.5, 1, 2, 4, 8]  # waits between reconnection attempts, the last one repeating
PROBE_PERIOD_S = 1.0  # default: one RTT ping and one probe each way per period, at most 5 % of the link
# onnxruntime-web's float speed over numpy's, assumed only to decide whether importing it
# could pay off at all (the notes measured 10-15x); plans then use measured times.
ORT_SPEEDUP_PRIOR = 10.0


def notify(kind, **data):
    """Tell the page something happened, unasked (connection state, context, plan)."""
    js.postMessage(to_js({"type": kind, **data}, dict_converter=js.Object.fromEntries))


class EdgeLink:
    """The WebSocket to the edge: awaits replies by request, reconnects with backoff."""

    def __init__(self, url):
        self.url = url
        self.socket = None
        self.hello = None
        self.pending = {}  # ("infer", id) or ("ping", seq) -> Future of the reply Frame
        self.ready = asyncio.Event()
        self.attempt = 0
        self._proxies = []

    async def run(self):
        """Keep a connection up for as long as the worker lives."""
        while True:
            try:
                await self._connect()
                self.attempt = 0
                await self.closed
            except (ConnectionError, asyncio.TimeoutError) as exc:
                notify("edge", state="unreachable", detail=str(exc) or "no HELLO in time")
            wait = BACKOFF_S[min(self.attempt, len(BACKOFF_S) - 1)]
            self.attempt += 1
            notify("edge", state="reconnecting", detail=f"attempt {self.attempt} in {wait} s")
            await asyncio.sleep(wait)

    async def _connect(self):
        loop = asyncio.get_event_loop()
        opened, self.closed = loop.create_future(), loop.create_future()
        socket = js.WebSocket.new(self.url)
        socket.binaryType = "arraybuffer"

        def on_open(event):
            opened.done() or opened.set_result(True)

        def on_close(event):
            self.ready.clear()
            self.socket = None
            for future in self.pending.values():
                future.done() or future.set_exception(ConnectionError("the edge closed the connection"))
            self.pending.clear()
            opened.done() or opened.set_exception(ConnectionError(f"cannot reach {self.url}"))
            self.closed.done() or self.closed.set_result(True)

        for proxy in self._proxies:
            proxy.destroy()
        self._proxies = [create_proxy(on_open), create_proxy(self._on_message), create_proxy(on_close)]
        socket.onopen, socket.onmessage, socket.onclose = self._proxies
        await opened
        self.socket = socket
        await asyncio.wait_for(self.ready.wait(), REPLY_TIMEOUT_S)  # HELLO comes first

    def _on_message(self, event):
        data = bytes(event.data.to_py())
        frame = wire.decode(data)
        if frame.type is MessageType.HELLO:
            self.hello = frame.header
            self.ready.set()
            notify("edge", state="connected", hello=json.dumps(frame.header))
            return
        key = ("ping", frame.header.get("seq")) if frame.type is MessageType.PONG else ("infer", frame.header.get("id"))
        future = self.pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result((frame, len(data)))
        elif frame.type is MessageType.ERROR:
            notify("edge", state="error", detail=frame.header.get("message", ""))

    async def exchange(self, key, frame):
        """Send a frame, await its reply: (reply, bytes sent, bytes received).
        ConnectionError or TimeoutError if none comes."""
        if self.socket is None or not self.ready.is_set():
            raise ConnectionError("not connected to the edge")
        future = asyncio.get_event_loop().create_future()
        self.pending[key] = future
        data = wire.encode(frame)
        self.socket.send(to_js(data))
        try:
            reply, received = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
            return reply, len(data), received
        finally:
            self.pending.pop(key, None)


class Runtime:
    """The model, the link, the context and the plan of this worker.

    `model` is the browser bundle (conv1 and the binary branch), or None for a model made
    by `strata split`: then every block is a float block, the device runs them from block
    0 in onnxruntime-web, and the shipped samples are already input tensors.
    """

    def __init__(self, manifest, model, samples, link, ort_assets):
        self.manifest, self.model, self.link = manifest, model, link
        self.variants = {}  # pruned variant name -> (its manifest, the URL of its folder), see load_variants
        self.variants_requested = False
        self.ort_assets = ort_assets
        self.first_float = 0 if model is None else 1  # the device's first block beyond the bundle
        self.images, self.labels = samples
        self.blocks = len(manifest["blocks"])
        self.classes = manifest.get("classes", [str(i) for i in range(10)])
        self.next_id = self.next_seq = 0
        self.goal = Goal("latency")
        self.manual = None  # a Plan the page fixed, or None to follow the planner
        self.offered = None  # variant names the planner may choose from; None: all served
        self.replanner = Replanner()
        self.context = None  # ContextTracker, once the edge said HELLO
        self._hello = None  # the HELLO the context was last told about
        self.devices = {}  # variant -> DeviceBlocks, see device()
        self.conv1_ms, self.branch_ms = self._profile()
        self.macs_per_ms = matmul_speed()
        self.wake = asyncio.Event()  # set when a request took far longer than forecast
        self.last_request_at = 0.0  # perf_counter() of the last classify
        self.probe_period_s = PROBE_PERIOD_S  # probes stay within 5 % of the link whatever the period
        self._planned = {}  # plan -> (route, forecast), made at the last re-plan: not per request

    async def load_variants(self):
        """The pruned variants' manifests (small; their blocks load only if a plan runs them
        here), each checked against the sha256 the model's manifest gives for it. Only the
        accuracy goal plans with variants, so they are fetched when it (or a variant by
        name) is first asked for, not before the first answer."""
        for entry in self.manifest.get("variants", []):
            url = f"/models/{entry['dir']}/"
            data = await fetch_bytes(url + "manifest.json")
            if hashlib.sha256(data).hexdigest() != entry["manifest_sha256"]:
                notify("edge", state="error", detail=f"{url}manifest.json does not match its sha256; variant "
                                                     f"{entry['name']} is not offered")
                continue
            self.variants[entry["name"]] = (json.loads(data), url)
            if self.context is not None:
                self.context.add_variant(entry["name"], self.variants[entry["name"]][0])
        self.replan()

    def _profile(self, repeats=5):
        """Median conv1 and branch times on this device, from the shipped samples."""
        if self.model is None:
            return None, None
        times = [self._time_bundle(image) for image in self.images[:repeats + 1]]
        conv1, branch = zip(*times[1:])  # the first run warms up
        return float(np.median(conv1)), float(np.median(branch))

    def _time_bundle(self, image):
        """(conv1 ms, branch ms) on one image."""
        begin = time.perf_counter()
        features = self.model.conv1(image[None])
        middle = time.perf_counter()
        self.model.branch_logits(features)
        return (middle - begin) * 1000, (time.perf_counter() - middle) * 1000

    def _refresh_device(self):
        """Re-time conv1 and the branch on a sample when no request did lately (a few ms
        a second), so the device's speed stays current when the page is idle, and a
        start-up profile taken while the page was still busy loading does not stick."""
        if self.model is None or time.perf_counter() - self.last_request_at < self.probe_period_s:
            return
        conv1_ms, branch_ms = self._time_bundle(self.images[self.next_seq % len(self.images)])
        self.context.on_device({"conv1_ms": conv1_ms, "branch_ms": branch_ms})

    # -- the plan ------------------------------------------------------------------------
    def current_plan(self):
        if self.manual is not None:
            return self.manual
        if self.replanner.current is not None and self.replanner.current.plan is not None:
            return self.replanner.current.plan
        return default_plan(self.blocks, bundle=self.model is not None)

    def replan(self):
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
        route = self.route(plan)
        for segment in route:
            if segment.executor == ORT:
                device_blocks.join(segment.start, segment.stop)
        notify("plan", plan=plan.to_header(), auto=self.manual is None,
               predicted_ms=choice.latency_ms, energy_mj=choice.energy_mj, accuracy=choice.accuracy,
               meets_budget=choice.meets_budget, reason=choice.reason,
               changed=self.current_plan() != previous, context=self.context.describe(),
               executors=self.executors(route))

    def route(self, plan):
        """How the device runs its blocks [0, a) of a plan (strata.device_route)."""
        if self.context is not None and plan.variant in self.context.variants:
            return self.context.route(plan.a, plan.branch, plan.variant)
        return [Segment(NUMPY, 0, plan.a)] if plan.a else []

    def executors(self, route):
        """Per block, the executor the device runs it in under `route`, or None off the device."""
        table = [None] * self.blocks
        for segment in route:
            table[segment.start:segment.stop] = [segment.executor] * (segment.stop - segment.start)
        return table

    def device(self, variant):
        """The device's float blocks of a variant, created when a plan first names it."""
        if variant not in self.devices:
            manifest, url = (self.manifest, "/models/") if variant == "" else self.variants[variant]

            def report(k, ms, executor):
                if self.context is not None:
                    self.context.on_block(k, ms, executor, variant)

            def report_session(start, stop, ms):
                if self.context is not None:
                    self.context.on_session(start, stop, ms, variant)

            self.devices[variant] = DeviceBlocks(manifest, variant, url, self.first_float, fetch_response,
                                                 self.ort_assets, report, report_session)
        return self.devices[variant]

    def _ort_could_pay(self):
        """Would some plan run float blocks on the device if they ran ORT_SPEEDUP_PRIOR
        times faster? Only then is onnxruntime-web worth fetching and timing."""
        costs = self.context.costs(runnable=self.blocks)
        hoped = [ms if k < self.first_float or ms is None else ms / ORT_SPEEDUP_PRIOR
                 for k, ms in enumerate(costs.device_ms)]
        choice = best_plan(dataclasses.replace(costs, device_ms=hoped, device_run_ms=None, device_run_branch_ms=None),
                           self.context.context(), self.goal)
        return choice.plan is not None and choice.plan.a > self.first_float

    async def _load_ort(self, device_blocks):
        notify("executor", state="loading")
        await device_blocks.load_ort()
        notify("executor", state="failed" if device_blocks.ort is None else "ready", detail=device_blocks.ort_error or "")
        # Learn what one call into onnxruntime-web costs from the two cheapest blocks joined
        # (the planner assumes nothing until then); replan() joins what the plan runs.
        if device_blocks.ort is not None:
            smallest = min(range(device_blocks.count - 1), key=lambda k: sum(
                block["bytes"] for block in device_blocks.manifest["blocks"][k:k + 2]))
            device_blocks.join(smallest, smallest + 2)
        self.replan()

    def _measure_compression(self, count=5):
        """What zlib gains on real tensors at the cuts the device can send (the raw input
        and conv1's output), so the planner can weigh the "+z" codecs from the start."""
        images = self.images[:count]
        if self.model is None:
            tensors = {0: np.asarray(images, np.float32)}
        else:
            tensors = {0: prepare(images, self.model.mean, self.model.std), 1: self.model.conv1(images)}
        for cut, x in tensors.items():
            for codec in CODECS:
                if codec.endswith("+z"):
                    raw = len(encode_tensor(x, codec[:-2])[1])
                    self.context.on_compression(cut, codec, raw, len(encode_tensor(x, codec)[1]))

    # -- one image -----------------------------------------------------------------------
    def planned(self, plan):
        """The device's route for a plan and the planner's predictions for it (None without
        a context), as of the last re-plan: a request pays for neither."""
        if plan not in self._planned:
            forecast = None
            if self.context is not None and plan.variant in self.context.variants:
                forecast = evaluate(plan, self.context.costs(self.blocks, plan.variant), self.context.context(),
                                    self.goal)
            self._planned[plan] = self.route(plan), forecast
        return self._planned[plan]

    async def classify(self, image):
        """One image through the current plan: (answer, plan, the forecast made beforehand)."""
        plan = self.current_plan()
        route, forecast = self.planned(plan)
        self.next_id += 1
        self.last_request_at = time.perf_counter()
        conv1 = not route or route[0].executor == NUMPY  # else conv1 runs with the blocks after it
        pending = device.start(self.model, image, plan, self.next_id, self.blocks, conv1=conv1)
        if pending.blocks is not None:
            start = pending.blocks[0]
            segments = [Segment(s.executor, max(s.start, start), s.stop) for s in route if s.stop > start]
            x = await self.device(plan.variant).run(pending.block_input, segments)
            pending = device.after_blocks(pending, x, plan, self.next_id, self.blocks)
        if self.context is not None:
            self.context.on_device(pending.answer.timing if pending.answer else pending.timing)
        if pending.answer is not None:
            return pending.answer, plan, forecast
        try:
            reply, up_bytes, down_bytes = await self.link.exchange(("infer", self.next_id), infer_frame(pending.request))
            result = read_result(reply)
        except (ConnectionError, asyncio.TimeoutError) as exc:
            return await self._fall_back(pending, plan, f"edge-unreachable: {exc or 'no reply in time'}"), plan, forecast
        except RequestError as exc:
            return await self._fall_back(pending, plan, f"edge-error: {exc.code}: {exc}"), plan, forecast
        rtt = self.context.rtt.value if self.context else None
        answer = device.finish(pending, result, up_bytes, down_bytes, rtt)
        if self.context is not None:
            self._learn(answer, rtt)
        expected = forecast.offload_ms if forecast else None
        if expected and answer.timing["total_ms"] > 2 * expected + 20:
            self.wake.set()  # the link changed under us: probe now rather than at the next period
        return answer, plan, forecast

    async def _fall_back(self, pending, plan, reason):
        """The edge failed us: the branch answers, or with no bundle, the device runs the rest."""
        if self.model is not None:
            return device.fall_back(self.model, pending, reason)
        logits = await self.device(plan.variant).run(pending.request.tensor, [Segment(ORT, plan.a, self.blocks)])
        return device.fall_back(None, pending, reason, logits)

    def _learn(self, answer, rtt):
        """Passive measurements from an offload: link rates and the edge's state."""
        timing = answer.timing
        half_rtt_s = (rtt or 0.0) / 2000
        self.context.on_rate("up", transfer_rate_bps(timing["up_bytes"], timing["uplink_ms"] / 1000, half_rtt_s))
        self.context.on_rate("down", transfer_rate_bps(timing["down_bytes"], timing["downlink_ms"] / 1000, half_rtt_s))
        self.context.on_edge(timing)

    # -- probes --------------------------------------------------------------------------
    async def _ping(self, payload=0, reply_bytes=0):
        self.next_seq += 1
        begin = time.perf_counter()
        reply, _, _ = await self.link.exchange(("ping", self.next_seq),
                                               wire.ping(self.next_seq, begin * 1000, reply_bytes, bytes(payload)))
        return (time.perf_counter() - begin) * 1000, reply.header

    async def probe_once(self, pings=1):
        """RTT, then one probe each way sized to stay under 5 % of the link, then re-plan."""
        hello = self.link.hello
        if hello is None:
            return
        if self.context is None:
            self.context = ContextTracker(self.manifest, hello, self.conv1_ms, self.branch_ms, self.macs_per_ms)
            for name, (manifest, _) in self.variants.items():
                self.context.add_variant(name, manifest)
            self._measure_compression()
        elif hello is not self._hello:  # reconnected: the edge may have new costs
            self.context.hello = hello
        self._hello = hello
        self._refresh_device()
        self.context.edge_up = self.link.ready.is_set()
        if self.context.edge_up:
            try:
                for _ in range(pings):
                    rtt, report = await self._ping()
                    self.context.on_rtt(rtt)
                self.context.on_edge(report)
                size = probe_bytes(self.context.up.value, self.probe_period_s)
                elapsed, _ = await self._ping(payload=size)
                self.context.on_rate("up", transfer_rate_bps(size, elapsed / 1000, rtt / 1000))
                size = probe_bytes(self.context.down.value, self.probe_period_s)
                elapsed, _ = await self._ping(reply_bytes=size)
                self.context.on_rate("down", transfer_rate_bps(size, elapsed / 1000, rtt / 1000))
            except (ConnectionError, asyncio.TimeoutError):
                self.context.edge_up = False
        self.replan()

    async def probe_loop(self):
        """Probe every period; at once, with a burst of pings, when a request surprised us."""
        surprised = False
        while True:
            started = time.perf_counter()
            await self.probe_once(pings=3 if surprised else 1)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.05, self.probe_period_s - (time.perf_counter() - started)))
                surprised = True
            except asyncio.TimeoutError:
                surprised = False


RUNTIME = None


def median_ms(work, repeats=3):
    """Median wall time of `work()` after one warm-up run, in ms."""
    work()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        work()
        times.append((time.perf_counter() - begin) * 1000)
    return float(np.median(times))


def matmul_speed():
    """MACs per ms of a conv-sized float32 matmul here: how block times are estimated
    before the blocks are downloaded and timed."""
    a = np.ones((256, 576), np.float32)
    b = np.ones((576, 64), np.float32)
    return a.shape[0] * a.shape[1] * b.shape[1] / median_ms(lambda: a @ b)


def runtime_info():
    """What runs here, as proof that the answer came from Python inside the worker."""
    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "numpy": np.__version__,
        "strata": strata.__version__,
        "isolated": bool(js.crossOriginIsolated),
    }


async def fetch_response(url):
    """(body, headers with lower-case names); RuntimeError on an HTTP error, with its text."""
    response = await pyfetch(url)
    if not response.ok:
        raise RuntimeError(f"{url}: HTTP {response.status}: {(await response.string())[:200]}")
    return await response.bytes(), {name.lower(): value for name, value in response.headers.items()}


async def fetch_bytes(url):
    return (await fetch_response(url))[0]


async def load_model(ws_url):
    """Fetch and verify the bundle, load the samples, start the edge link and the probes."""
    global RUNTIME
    manifest = json.loads(await fetch_bytes("/models/manifest.json"))
    model = None
    if "browser_bundle" in manifest:  # absent for a model made by `strata split`
        bundle = manifest["browser_bundle"]["file"]
        model = load_browser_model(manifest, {bundle: await fetch_bytes(f"/models/{bundle}")})
    with np.load(io.BytesIO(await fetch_bytes("/models/samples.npz"))) as shipped:
        samples = shipped["images"], shipped["labels"]
    assets = json.loads(await fetch_bytes("/assets.json"))
    link = EdgeLink(ws_url)
    RUNTIME = Runtime(manifest, model, samples, link, assets["ort"])
    asyncio.ensure_future(link.run())
    asyncio.ensure_future(RUNTIME.probe_loop())
    return {"blocks": RUNTIME.blocks, "classes": RUNTIME.classes, "samples": len(samples[1]),
            "block_names": [block["name"] for block in manifest["blocks"]],
            "bundle_bytes": manifest.get("browser_bundle", {}).get("bytes", 0),
            "plan": RUNTIME.current_plan().to_header(),
            "device": {"conv1_ms": RUNTIME.conv1_ms, "branch_ms": RUNTIME.branch_ms}}


def gallery(count):
    """The first `count` sample images as one uint8 buffer (count x 28 x 28), and labels;
    none for a split model, whose samples are input tensors rather than pictures."""
    if RUNTIME.model is None:
        return {"pixels": to_js(np.zeros(0, np.uint8)), "labels": [], "size": 0}
    images = np.ascontiguousarray(RUNTIME.images[:count], dtype=np.uint8)
    return {"pixels": to_js(images.reshape(-1)), "labels": [int(v) for v in RUNTIME.labels[:count]],
            "size": int(images.shape[-1])}


def set_plan(plan):
    """Fix the plan from the page (a dict), or hand the choice back to the planner (None)."""
    RUNTIME.manual = None if plan is None else Plan.from_header(plan, RUNTIME.blocks)
    RUNTIME.replan()
    return RUNTIME.current_plan().to_header()


def set_probe_period(seconds):
    """How often the worker probes its links (seconds, 0.2..60): longer saves the radio,
    shorter follows changes sooner. Each probe is sized to stay within 5 % of the link."""
    seconds = float(seconds)
    if not 0.2 <= seconds <= 60:
        raise ValueError(f"the probe period must be between 0.2 and 60 seconds; got {seconds}")
    RUNTIME.probe_period_s = seconds
    RUNTIME.wake.set()
    return seconds


def set_goal(kind, budget_ms=None, privacy=False, variants=None):
    """The user's goal; `variants` limits the model variants offered to the planner
    (names, "" for the unpruned model; None: every variant the edge serves)."""
    RUNTIME.goal = Goal(kind, budget_ms, bool(privacy))
    RUNTIME.offered = None if variants is None else {str(name) for name in variants}
    wants_variants = kind == "accuracy" or bool(RUNTIME.offered and RUNTIME.offered - {""})
    if wants_variants and not RUNTIME.variants_requested:
        RUNTIME.variants_requested = True
        asyncio.ensure_future(RUNTIME.load_variants())
    RUNTIME.replan()
    return RUNTIME.current_plan().to_header()


async def classify_sample(index):
    answer, plan, forecast = await RUNTIME.classify(RUNTIME.images[int(index)])
    return {**answer.to_dict(), "index": int(index), "truth": int(RUNTIME.labels[int(index)]),
            "plan": plan.to_header(), "predicted_ms": forecast.predict(answer.exited) if forecast else None,
            "predicted_mj": forecast.energy_mj if forecast else None}


async def measure_rtt(count):
    """Median round-trip time of `count` small pings to the edge, in milliseconds."""
    await asyncio.wait_for(RUNTIME.link.ready.wait(), 2 * REPLY_TIMEOUT_S)
    times = [(await RUNTIME._ping())[0] for _ in range(count)]
    return {"median_ms": float(np.median(times)), "samples": count}


def explain():
    """The planner's inputs and its current choice, for the page and for debugging."""
    if RUNTIME.context is None:
        return {"ready": False}
    costs = RUNTIME.context.costs(runnable=RUNTIME.blocks)
    context = RUNTIME.context.context()
    current = RUNTIME.replanner.current
    plan = RUNTIME.current_plan()
    device_blocks = RUNTIME.device(plan.variant)
    return {"ready": True, "device_ms": costs.device_ms, "edge_ms": costs.edge_ms, "cloud_ms": costs.cloud_ms,
            "branch_ms": costs.branch_ms, "exit_rate": costs.exit_rate,
            "edge_link": None if context.edge is None else vars(context.edge),
            "cloud_link": None if context.cloud is None else vars(context.cloud),
            "device_slowdown": context.device_slowdown, "edge_slowdown": context.edge_slowdown,
            "variant": plan.variant, "variants": RUNTIME.context.variants,
            "executors": RUNTIME.executors(RUNTIME.route(plan)),
            "device_block_ms": {str(k): v for k, v in RUNTIME.context.device_block_ms.get("", {}).items()},
            "session_ms": RUNTIME.context.session.value,
            "joined": [list(key) for key in device_blocks.joined],
            "join_errors": {f"{start}-{stop}": why for (start, stop), why in device_blocks.join_errors.items()},
            "route_ready": device_blocks.joined_for(RUNTIME.route(plan)),
            "ort": {"requested": RUNTIME.device("").ort_requested, "ready": RUNTIME.device("").ort is not None,
                    "error": RUNTIME.device("").ort_error},
            "choice": None if current is None else {"plan": current.plan.to_header() if current.plan else None,
                                                    "latency_ms": current.latency_ms, "exit_ms": current.exit_ms,
                                                    "offload_ms": current.offload_ms}}


def bench_branch(count, repeats):
    """Per-sample ms in this worker: conv1, the bit-packed branch, and the same branch by
    float +-1 matmuls (a reference kept for exactly this comparison), medians."""
    images = RUNTIME.images[:count]
    features = [RUNTIME.model.conv1(image[None]) for image in images]
    model = RUNTIME.model

    def per_sample(work):
        return float(np.median([median_ms(lambda i=i: work(i), repeats) for i in range(count)]))

    return {"conv1_ms": per_sample(lambda i: model.conv1(images[i][None])),
            "branch_ms": per_sample(lambda i: model.branch_logits(features[i])),
            "branch_float_ms": per_sample(lambda i: model.branch_logits_float_reference(features[i])),
            "agree": all(int(model.branch_logits(f).argmax()) == int(model.branch_logits_float_reference(f).argmax())
                         for f in features)}


# -- the page's own images (uploads, camera frames) and its start-up figures ---------------

def input_size():
    """[rows, cols] of the images the model takes raw (the manifest's input.raw_size), which
    the page fits uploads and camera frames into; None for a model made by `strata split`,
    which takes tensors rather than pictures."""
    raw = RUNTIME.manifest["input"].get("raw_size")
    return None if raw is None else [int(v) for v in raw]


def _uint8_pixels(pixels):
    """Greyscale values 0..255 from the page, as a flat uint8 array: a list of numbers,
    bytes, or a JS typed array."""
    if hasattr(pixels, "to_py"):
        pixels = pixels.to_py()
    if isinstance(pixels, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(pixels), dtype=np.uint8)
    values = np.asarray(list(pixels), dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 255):
        raise ValueError(f"pixels must be greyscale values in 0..255; got {values.min()} to {values.max()}")
    return np.rint(values).astype(np.uint8)


async def classify_pixels(pixels, width, height):
    """One image the page made (an upload or a camera frame): `width` x `height` greyscale
    values 0..255, row by row, a light object on a dark background, at the model's raw size.
    It becomes a uint8 (rows, cols) image like the shipped samples, and goes through the
    current plan as they do. Returns what classify_sample returns, without index and truth."""
    rows, cols = input_size()
    if (int(height), int(width)) != (rows, cols):
        raise ValueError(f"expected a {cols}x{rows} image (the manifest's input.raw_size); got {width}x{height}")
    values = _uint8_pixels(pixels)
    if values.size != rows * cols:
        raise ValueError(f"expected {rows * cols} pixels for {cols}x{rows}; got {values.size}")
    image = values.reshape(rows, cols).copy()
    answer, plan, forecast = await RUNTIME.classify(image)
    return {**answer.to_dict(), "plan": plan.to_header(),
            "predicted_ms": forecast.predict(answer.exited) if forecast else None}


def load_transfer():
    """What this worker's downloads cost on the network so far, from the browser's Resource
    Timing, for the page to tell a cold load from a warm one. Each URL counts once, by its
    first fetch: worker.js fetches every runtime file and Pyodide then fetches it again
    from the HTTP cache. transferSize is 0 when the cache answered and only the headers
    for a 304, so a warm load moves a small fraction of the encoded bytes, a cold one all."""
    first = {}
    for entry in js.performance.getEntriesByType("resource"):
        first.setdefault(entry.name, entry)
    entries = list(first.values())
    return {"resources": len(entries), "from_cache": sum(1 for e in entries if e.transferSize == 0),
            "transfer_bytes": int(sum(e.transferSize for e in entries)),
            "encoded_bytes": int(sum(e.encodedBodySize for e in entries)),
            "decoded_bytes": int(sum(e.decodedBodySize for e in entries))}
