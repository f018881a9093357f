"""Support for the tests and the benchmarks alike: real Strata servers on loopback ports
(servers.py) and Debian's Chromium under Playwright (chromium.py). Nothing in the
product imports this package."""
