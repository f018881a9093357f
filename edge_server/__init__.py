"""Strata's servers and the tools around models, one room per concern:

    edge/            the edge tier: the page and runtime files, the WebSocket, the edge's
                     blocks, dynamic batching, the forward to the cloud (`strata serve`)
    cloud/           the cloud tier: an Open Inference Protocol server over the model's
                     suffixes, and the protocol's body format (`strata cloud`)
    blocks/          the model's blocks as the servers hold them: verified onnxruntime
                     sessions, graphs joined from them, pruned variants
    split/           cutting any ONNX model into blocks (`strata split`)
    link_emulator/   a user-space network link between tiers, with a control API (`strata link`)
    provision/       fetching and verifying what the browser loads, and the strata wheel
                     (`strata provision`)
    config.py        every path, address and limit, in one place
    processes.py     starting helper servers and waiting until they answer

What runs in the browser as well lives in shared/strata, not here.
"""
