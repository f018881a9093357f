"""Cutting any ONNX model into blocks the servers and the browser can run (`strata split`):
prepare.py makes the graph servable (one symbolic batch, known shapes), cut_points.py
finds where it can be cut and picks the cuts, write.py checks and writes the blocks and
the manifest, samples.py turns pictures into sample inputs."""
