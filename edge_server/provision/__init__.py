"""Fetching, verifying and laying out what the browser loads, with no CDN
(browser_runtime.py), and the pure-Python strata wheel the worker unpacks (wheel.py)."""
