"""Fetching, verifying and laying out what the browser loads, with no CDN
(browser_runtime.py): the worker's Python derived from it and its memory snapshot
(worker_python.py), served with compressed siblings (served.py)."""


def say(message: str) -> None:
    """One line of provisioning progress on stdout."""
    print(f"[provision] {message}", flush=True)
