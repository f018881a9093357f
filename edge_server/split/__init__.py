"""Cutting any ONNX model into blocks the servers and the browser can run (`strata split`).

source.py loads the user's file (and its external weights) and runs it as given;
fold.py evaluates constant-only subgraphs and converts old opsets; shapes.py knows every
tensor's dtype and shape at batch 1 and 2; prepare.py makes the graph servable (one
symbolic batch, known shapes, batch-first output); cut_points.py finds where it can be
cut and picks the cuts; contract.py says what the input and output mean; samples.py turns
pictures into sample inputs; write.py checks the blocks against the source and writes
them with the manifest. docs/split.md says which graphs are supported and which refused.
"""


class SplitError(ValueError):
    """A model Strata cannot split as it is; the message says why and what to do."""
