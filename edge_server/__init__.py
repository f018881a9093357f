"""The edge tier: the Starlette app that serves the page and the worker's runtime,
and talks to the browser worker over a WebSocket."""
