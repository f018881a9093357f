"""The cloud tier: an Open Inference Protocol (KServe v2) server over the model's
suffixes (server.py), and the protocol's REST body format shared with the edge's
client (protocol.py). Triton or KServe can take its place (docs/scaling.md)."""
