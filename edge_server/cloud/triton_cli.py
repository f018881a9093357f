"""Write a Triton Inference Server model repository that serves as Strata's cloud.

One model per cut point, named as the edge asks (`<model>-from-<k>`, and
`<model>-<variant>-from-<k>` for each pruned variant), each with a config.pbtxt with
dynamic batching and the suffix graph. The default backend, onnxruntime, is the one
Triton's release containers run; --backend python writes a model.py that calls the
onnxruntime package instead, for a Triton without that backend (the one in the
`nvidia-pytriton` wheel, which the tests run). Then:

    tritonserver --model-repository DIR
    strata serve --cloud-url http://TRITON_HOST:8000

docs/scaling.md has the details.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_server.config import Settings

SUMMARY = "Write a Triton Inference Server model repository (one model per cut) to use as the cloud."
BACKENDS = ("onnxruntime", "python")
# The defaults of the verified setup in ../shared/notes/triton.md: up to 64 samples per model
# call (the edge forwards at most --max-batch, 32 by default, in one request: keep this at
# least that), and a lone request waits at most 0.5 ms for company.
MAX_BATCH = 64
QUEUE_DELAY_US = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="DIR", help="the model repository to write (created if missing)")
    parser.add_argument("--models", type=Path, default=Settings().models_dir,
                        help="model folder: ours, or one `strata split` wrote (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0],
                        help="onnxruntime: platform onnxruntime_onnx (Triton's containers); python: model.py "
                             "calling onnxruntime (a Triton without that backend) (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH,
                        help="max_batch_size: most samples in one model call (default: %(default)s)")
    parser.add_argument("--queue-delay-us", type=int, default=QUEUE_DELAY_US,
                        help="dynamic batching: how long a lone request waits for company, in "
                             "microseconds (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from strata.cli import CommandError

    from edge_server.blocks.main_path import ModelError
    from edge_server.cloud.triton import write_repository

    try:
        names, refused = write_repository(args.models, args.out, args.backend, args.max_batch, args.queue_delay_us)
    except (ModelError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    for reason in refused.values():
        print(f"left out: {reason}")
    print(f"wrote {len(names)} models ({args.backend} backend) to {args.out}: {', '.join(names)}")
    print(f"start Triton with `tritonserver --model-repository {args.out}`, then "
          "`strata serve --cloud-url http://TRITON_HOST:8000`")
    return 0
