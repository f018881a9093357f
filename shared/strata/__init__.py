"""Strata: one deep network split across the browser, an edge server and the cloud.

This package is the code both sides share. It imports numpy only, so the very same
files run in CPython on the servers and in Pyodide inside the browser's Web Worker.
"""

__version__ = "0.1.0"
