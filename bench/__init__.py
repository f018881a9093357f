"""Benchmarks: each measures a figure the issues ask for, in real Chromium or real servers."""
