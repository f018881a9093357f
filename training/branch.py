"""Give any image classifier a binary branch, the browser exit, by distillation from itself.

MODEL_DIR is a folder `strata split` made (or ours, models/); --images a folder of
unlabelled pictures of the kind the model will see (sub-folders group the pictures of
one source). Steps (training/distill.py):

1. attach point: the last cut before the model's second convolution (after its first
   and what follows it up to the next), or --after K (the input of block K). A cut that
   is no block boundary yet is made one: the model is split there too;
2. teacher: the full model in onnxruntime over the pictures' views (the picture, random
   crops, mirrors, small colour changes), keeping its soft outputs and the attach tensor;
3. student: binary blocks shaped after the main path, trained with torch on the
   teacher's outputs at --temperature;
4. exit rule: calibrated on held-out sources so that the system (branch exits plus
   offloads) agrees with the full model within --max-loss points, then measured on
   other held-out sources (the test split);
5. export: the bit-packed bundle, recorded in the manifest (browser_bundle, exit, test,
   branch) with its sha256; the folder is written beside MODEL_DIR, verified (every
   artifact's sha256, the blocks load, the numpy branch gives the trained one's answers)
   and only then moved in.

The page, `strata classify` and the planner then use the branch as they use ours.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from strata.cli import CommandError

SUMMARY = "Give any classifier a binary branch (the browser exit), distilled from the model itself (needs torch)."
BUNDLE = "browser_bundle.bin"
QUICK = {"views": 8, "epochs": 8}  # --quick: minutes on 2 cores
FULL = {"views": 16, "epochs": 30}
VERIFY_VIEWS = 64  # test views on which the exported numpy branch must give the trained one's answers
AGREEMENT = 0.98  # of them, at least (binarizing can flip a bit where a value sits on a threshold)
LOGIT_TOLERANCE = 0.05  # reported: numpy branch vs torch (float16 classifier), as training/export.py


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a folder strata split made, or ours")
    parser.add_argument("--images", type=Path, required=True, metavar="DIR",
                        help="unlabelled pictures of the kind the model will see (sub-folders: one source each)")
    parser.add_argument("--after", type=int, metavar="K",
                        help="attach the branch at the input of block K (default: after the first convolution)")
    parser.add_argument("--max-loss", type=float, default=1.0, metavar="POINTS",
                        help="agreement with the full model the exits may cost, in points (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=4.0, help="temperature of the distillation (default: %(default)s)")
    parser.add_argument("--views", type=int, help=f"views per picture (default: {FULL['views']}; --quick {QUICK['views']})")
    parser.add_argument("--epochs", type=int, help=f"training epochs (default: {FULL['epochs']}; --quick {QUICK['epochs']})")
    parser.add_argument("--held-out", type=float, default=0.2,
                        help="share of the sources for calibration, and again for the test (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="views per training step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the views, the held-out split and the training (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime CPU threads")
    parser.add_argument("--quick", action="store_true", help=f"fewer views and epochs ({QUICK})")


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise CommandError("strata branch trains with torch, which is not installed: "
                           "pip install -e '.[train]' (torch 2.13.0, CPU)") from None
    from strata.bundle import FORMAT_VERSION, sha256, write_bundle

    from edge_server.split import SplitError
    from edge_server.split.write import write_folder
    from training import distill
    from training.calibrate import figures_at_exit
    from training.fold import distilled_bundle
    from training.pictures import input_rule, read_pictures, split_sources, views

    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.views < 1 or args.epochs < 1 or not 0 < args.max_loss <= 100 or not 0 < args.held_out < 0.5:
        raise CommandError("--views and --epochs must be at least 1, --max-loss in (0, 100], --held-out in (0, 0.5)")
    torch.set_num_threads(args.threads)
    begin = time.perf_counter()
    folder = args.model_dir
    manifest = read_manifest(folder)
    kind, classes = class_output(manifest, folder)
    pictures = read_pictures(args.images)
    parts = split_sources(pictures, args.held_out, args.seed)
    try:
        attach, files, manifest = attach_point(folder, manifest, args.after)
        plan = distill.design(manifest, attach)
    except (SplitError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"branch at block {attach}'s input {manifest['blocks'][attach]['input_shape']}"
          f"{' (split there too)' if files else ''}: {len(plan.shapes)} binary blocks, "
          f"{plan.pools} input pools, {plan.binary_macs / 1e6:.1f} M binary MACs", flush=True)
    head, tail = joined(folder, manifest, files, attach)
    teacher = distill.Teacher(head, tail, kind, plan.pools, args.threads)
    to_input = input_rule(manifest)
    taught, teacher_begin = {}, time.perf_counter()
    for name, chosen in parts.items():
        total = len(chosen) * args.views
        taught[name] = teacher.teach(distill.batched(chosen, args.views, to_input, views, args.seed), total, name,
                                     VERIFY_VIEWS if name == "test" else 0)
    teacher_s = time.perf_counter() - teacher_begin
    print(f"teacher: {', '.join(f'{len(t.logits)} {n} views' for n, t in taught.items())} in {teacher_s:.0f} s",
          flush=True)
    student, train_s = distill.train(plan, taught["train"], classes, args)
    logits = {name: distill.student_logits(student, t.features) for name, t in taught.items()}
    try:
        calibration = distill.exit_rule(logits["calibration"], taught["calibration"].logits, args.max_loss)
    except ValueError:
        agree = (logits["calibration"].argmax(1) == taught["calibration"].logits.argmax(1)).mean()
        raise CommandError(f"no exit threshold keeps the system within {args.max_loss} points of the full model on "
                           f"the held-out pictures (the branch agrees with it on {agree:.1%} of them): give more "
                           "pictures, more --epochs, a deeper --after or a larger --max-loss") from None
    test = taught["test"]
    figures = figures_at_exit((test.logits, logits["test"]), test.logits.argmax(1), calibration)
    bundle = write_bundle(*distilled_bundle(student))
    full_bytes = manifest["full_graph"]["bytes"]
    agreement, predictions = executor_agreement(manifest, bundle, attach, calibration, test.raw,
                                                logits["test"][:len(test.raw)])
    record = {
        "teacher": "the full model's outputs (onnxruntime), softened at the temperature",
        "temperature": args.temperature, "max_loss_points": args.max_loss, "seed": args.seed,
        "pictures": {name: {"sources": len({p.source for p in chosen}), "pictures": len(chosen),
                            "views": len(taught[name].logits)} for name, chosen in parts.items()},
        "views_per_picture": args.views, "design": plan.to_manifest(), "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "quick": args.quick,
        "teacher_seconds": round(teacher_s, 1), "training_seconds": round(train_s, 1),
        "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "executor_agreement": agreement,
    }
    manifest = {key: value for key, value in manifest.items() if key not in ("deployed_test", "executor_agreement")}
    manifest.update({
        "browser_bundle": {"file": BUNDLE, "format_version": FORMAT_VERSION, "contains_block": None, "attach": attach,
                           "bytes": len(bundle), "ratio_vs_full_onnx": full_bytes / len(bundle)},
        "exit": {key: calibration[key] for key in ("rule", "threshold", "tolerance", "validation", "curves")},
        "test": figures, "branch": record,
        "artifacts": {**manifest["artifacts"], BUNDLE: sha256(bundle)},
    })
    if "artifact_bytes" in manifest:
        manifest["artifact_bytes"] = {**manifest["artifact_bytes"], BUNDLE: len(bundle),
                                      **{name: len(data) for name, data in files.items()}}
    try:
        write_folder(folder, {**files, BUNDLE: bundle}, manifest, keep_others=True,
                     verify=lambda staged: verify(staged, test.raw, predictions))
    except SplitError as exc:
        raise CommandError(str(exc)) from None
    print(f"test ({figures['images']} views of {record['pictures']['test']['sources']} held-out sources): the branch "
          f"agrees with the full model on {figures['branch_accuracy']:.1%}; it answers {figures['exit_rate']:.1%} "
          f"({calibration['rule']} >= {calibration['threshold']:.3f}) and the system agrees on "
          f"{figures['system_accuracy']:.1%} ({100 * (1 - figures['system_accuracy']):.2f} points lost)")
    print(f"bundle {len(bundle):,} bytes, {full_bytes / len(bundle):.1f}x smaller than full.onnx ({full_bytes:,}); "
          f"teacher {teacher_s:.0f} s, training {train_s:.0f} s, {time.perf_counter() - begin:.0f} s in all")
    print(f"wrote {BUNDLE} and manifest.json{' and the re-split blocks' if files else ''} into {folder}")
    return 0


def read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise CommandError(f"{path} is missing: MODEL_DIR must be a folder strata split made (or models/)")
    return json.loads(path.read_text())


def class_output(manifest: dict, folder: Path) -> tuple[str, int]:
    """(kind, classes) of a classifier's output; CommandError for any other output."""
    from edge_server.split.contract import class_count

    output = manifest.get("output")
    if output is None:  # ours: logits over its classes
        return "logits", len(manifest["classes"])
    count = class_count(output["shape"])
    if output.get("kind") not in ("logits", "probabilities") or count is None:
        raise CommandError(f"{folder}: the model's output is {output.get('kind')} {output['shape']}, not a class "
                           "vector: a branch answers for classifiers only (the manifest's output.kind must be "
                           "logits or probabilities)")
    return output["kind"], count


def _has_conv(block: dict) -> bool:
    return "Conv" in (block.get("onnx_ops") or []) or any(op["op"].startswith("conv") for op in block.get("ops") or [])


def attach_point(folder: Path, manifest: dict, after: int | None) -> tuple[int, dict[str, bytes], dict]:
    """(K, block files to write, manifest): where the branch attaches, splitting the model
    there too if that cut is no block boundary yet (then new block files and manifest)."""
    import onnx

    from edge_server.split.write import attach_cut, cut_also_at

    count = len(manifest["blocks"])
    if after is not None:
        if not 1 <= after < count:
            raise CommandError(f"--after {after}: the branch attaches at the input of a block 1..{count - 1}")
        return after, {}, manifest
    tensors = [cut.get("tensor") for cut in manifest["cuts"]]
    if None in tensors:  # ours (no tensor names): the block boundary after the block holding the first conv
        return next(k for k, block in enumerate(manifest["blocks"]) if _has_conv(block)) + 1, {}, manifest
    tensor = attach_cut(onnx.load(folder / "full.onnx"))
    if tensor in tensors:
        return tensors.index(tensor), {}, manifest
    files, manifest = cut_also_at(folder, manifest, tensor)
    return [cut["tensor"] for cut in manifest["cuts"]].index(tensor), files, manifest


def joined(folder: Path, manifest: dict, files: dict[str, bytes], attach: int) -> tuple[bytes, bytes]:
    """Blocks [0, attach) and [attach, N) each joined into one graph (serialized)."""
    import onnx

    from edge_server.blocks.graphs import chain

    blocks = [onnx.load_from_string(files[b["file"]]) if b["file"] in files else onnx.load(folder / b["file"])
              for b in manifest["blocks"]]
    return chain(blocks[:attach]).SerializeToString(), chain(blocks[attach:]).SerializeToString()


def executor_agreement(manifest: dict, bundle: bytes, attach: int, calibration: dict, raw: np.ndarray,
                       torch_logits: np.ndarray) -> tuple[dict, list[int]]:
    """How closely the bundle in the device's numpy executor gives the trained branch's
    logits, on the attach tensors of the first test views, and its answers there;
    CommandError below AGREEMENT."""
    from strata.bundle import sha256
    from strata.executor import load_browser_model

    entry = {"file": BUNDLE, "format_version": 1, "attach": attach}
    model = load_browser_model({**manifest, "browser_bundle": entry, "exit": calibration,
                                "artifacts": {BUNDLE: sha256(bundle)}}, {BUNDLE: bundle})
    logits = model.branch_logits(raw)
    predictions = logits.argmax(1)
    agreement = float((predictions == torch_logits.argmax(1)).mean())
    if agreement < AGREEMENT:
        raise CommandError(f"the exported branch answers as the trained one on only {agreement:.1%} of {len(raw)} "
                           "test views: a bug in the export, please report it")
    diff = np.abs(logits - torch_logits).max(axis=1)
    return {"views": len(raw), "prediction_agreement": agreement, "max_abs_logit_diff": float(diff.max()),
            "tolerance": LOGIT_TOLERANCE, "within_tolerance": float((diff <= LOGIT_TOLERANCE).mean())}, \
        predictions.tolist()


def verify(folder: Path, raw: np.ndarray, predictions: list[int]) -> None:
    """The written folder before it moves in: every artifact matches its sha256 (and the
    blocks load), and the bundle, loaded as the device loads it, answers as before."""
    from strata.executor import load_browser_model

    from edge_server.blocks.main_path import MainPath, ModelError

    try:
        manifest = MainPath(folder).manifest
    except ModelError as exc:
        raise CommandError(f"the written folder does not verify: {exc}") from None
    name = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {name: (folder / name).read_bytes()})
    if model.branch_logits(raw).argmax(1).tolist() != predictions:
        raise CommandError("the written bundle answers otherwise than the one checked before writing")
