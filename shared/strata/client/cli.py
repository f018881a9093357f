"""Classify pictures through a Strata edge from Python, as the page does, without a browser.

It runs the same client as the page's worker (strata.client): it loads and verifies the
model the edge serves, profiles this device, probes the link, plans, runs its share
here (the binary branch, float blocks in numpy or onnxruntime), offloads the rest, and
falls back on the device when the edge fails. Per image it prints the label, the
confidence, where the answer came from (tier) and the plan; --json prints one JSON
object per image instead, for scripts.

    strata classify shirt.jpg boot.png --edge ws://127.0.0.1:8000/ws
    strata classify --sample 0 --sample 1 --json
    strata classify photo.jpg --private --goal energy

Pictures become the model's input by the model's one rule, as the page's uploads do
(strata.client.pictures.picture_input): fitted into 28x28 greyscale for our Fashion-MNIST
model, the manifest's resize, crop and normalization for a model made by `strata split`.
A model whose input is not a picture takes a .npy file holding one input tensor (its
per-sample shape, e.g. 3,224,224), or --sample. An output that is not per-class scores
is printed as a summary: its shape, range and largest values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from strata.cli import CommandError

SUMMARY = "Classify pictures through a Strata edge from Python: the page's client, without a browser."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE",
                        help="pictures (PNG, JPEG, ... anything Pillow reads) or .npy input tensors")
    parser.add_argument("--edge", default="ws://127.0.0.1:8000/ws",
                        help="the edge's WebSocket URL (default: %(default)s)")
    parser.add_argument("--sample", type=int, action="append", default=[], metavar="INDEX",
                        help="also classify the model's shipped sample INDEX (repeatable)")
    parser.add_argument("--goal", choices=["latency", "energy", "accuracy"], default="latency",
                        help="what the planner optimizes (default: %(default)s)")
    parser.add_argument("--budget-ms", type=float, help="latency budget for --goal accuracy, in ms")
    parser.add_argument("--private", action="store_true",
                        help="raw input never leaves this device: no plan may upload it (a >= 1)")
    parser.add_argument("--plan", metavar="A,B[,CODEC[,branch]]",
                        help="fix the plan instead of planning: blocks [0,A) here, [A,B) at the edge, "
                             "[B,N) in the cloud, e.g. 1,4,f16,branch")
    parser.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                        help="pictures: invert to a light object on a dark background "
                             "(auto: when the picture's border is light; default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image, for scripts")


def parse_plan(text: str, blocks: int):
    """"A,B[,CODEC[,branch]]" as a checked Plan; CommandError saying what is wrong."""
    from strata.plan import Plan, PlanError

    fields = text.split(",")
    try:
        a, b = int(fields[0]), int(fields[1])
        plan = Plan(a, b, fields[2] if len(fields) > 2 else "f16", len(fields) > 3 and fields[3] == "branch")
        return plan.check(blocks)
    except (IndexError, ValueError) as exc:  # PlanError is a ValueError
        detail = str(exc) if isinstance(exc, PlanError) else "A and B must be integers"
        raise CommandError(f"--plan {text!r}: expected A,B[,CODEC[,branch]] such as 1,4,f16,branch; {detail}") from None


def load_image(path: Path, client, invert: str):
    """The model's input for one file: a picture fitted as the page fits uploads, or a
    .npy tensor. CommandError, saying what was expected, for anything else."""
    import numpy as np

    from strata.client.pictures import picture_input, takes_pictures
    from strata.preprocess import InputError

    if not path.is_file():
        raise CommandError(f"{path} does not exist")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CommandError(f"{path} is not a numpy .npy array: {exc}") from None
    if not takes_pictures(client.manifest):
        shape = client.manifest["input"].get("shape")
        raise CommandError(f"{path}: this model ({client.manifest.get('name')}) takes tensors, not pictures: "
                           f"pass a .npy file holding one input of shape {shape}, or --sample INDEX")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGBA"))
    except (UnidentifiedImageError, OSError) as exc:
        raise CommandError(f"{path} is not a picture Pillow can read ({exc}); give a PNG or JPEG file") from None
    try:
        return picture_input(client.manifest, pixels, invert=None if invert == "auto" else invert == "yes")[0]
    except InputError as exc:
        raise CommandError(f"{path}: {exc}") from None


def _class_name(client, label: int) -> str | None:
    """The label's class name; None for an output that is not per-class scores (label -1)."""
    if label < 0:
        return None
    return client.classes[label] if label < len(client.classes) else str(label)


def _what(client, result: dict) -> str:
    """The answer in words: a class and its confidence, or a tensor's summary."""
    summary = result["summary"]
    if summary is not None:
        top = ", ".join(f"{v['value']:.3g} at {v['at']}" for v in summary["top"][:3])
        return (f"a {'x'.join(map(str, summary['shape']))} tensor, {summary['min']:.3g} to {summary['max']:.3g} "
                f"(largest: {top})")
    text = f"{_class_name(client, result['label'])} {100 * result['confidence']:.1f} %"
    if result["uncertain"] == "branch-disagrees":
        return text + f", uncertain: the branch said {_class_name(client, result['branch_label'])}"
    return text + (", uncertain: low confidence" if result["uncertain"] else "")


def _line(name: str, client, result: dict) -> str:
    plan = result["plan"]
    where = {"browser": "on this device"}.get(result["tier"], f"by the {result['tier']}")
    if result["fallback"]:
        where += f" (fallback: {result['fallback']})"
    return (f"{name}: {_what(client, result)}, answered {where}, "
            f"plan a={plan['a']} b={plan['b']} {plan['codec']}{' +branch' if plan['branch'] else ''}, "
            f"{result['timing']['total_ms']:.1f} ms")


async def _classify(args: argparse.Namespace) -> int:
    import strata.client
    from strata.plan import PlanError
    from strata.planner import Goal

    try:
        goal = Goal(args.goal, args.budget_ms, args.private)
    except ValueError as exc:
        raise CommandError(f"{exc}; pass --budget-ms with --goal accuracy") from None
    try:
        async with strata.client.connect(args.edge) as client:
            inputs = [(str(path), load_image(path, client, args.invert)) for path in args.images]
            for index in args.sample:
                if not 0 <= index < len(client.labels):
                    raise CommandError(f"--sample {index}: the model ships samples 0..{len(client.labels) - 1}")
                inputs.append((f"sample {index}", client.images[index]))
            client.set_goal(goal)
            if args.plan:
                try:
                    client.set_plan(parse_plan(args.plan, client.blocks))
                except PlanError as exc:
                    raise CommandError(f"--plan {args.plan}: {exc}") from None
            for name, image in inputs:
                try:
                    result = (await client.classify(image)).to_dict()
                except ValueError as exc:  # an input the model cannot take (strata.preprocess.InputError)
                    raise CommandError(f"{name}: {exc}") from None
                if args.json:
                    print(json.dumps({"image": name, "class": _class_name(client, result["label"]), **result}),
                          flush=True)
                else:
                    print(_line(name, client, result), flush=True)
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(f"{exc}. Is `strata serve` running there?") from None
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.images and not args.sample:
        raise CommandError("nothing to classify: give IMAGE files or --sample INDEX")
    try:
        from strata.client.websockets_transport import http_origin

        http_origin(args.edge)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return asyncio.run(_classify(args))
