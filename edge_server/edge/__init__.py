"""The edge tier: the Starlette app that serves the page and the worker's runtime, and
answers the browser worker's frames over a WebSocket, running the edge's blocks and
forwarding the deeper ones to the cloud. A sample's path: connection.py → session.py →
runtime.py (batching.py, cloud_client.py)."""
