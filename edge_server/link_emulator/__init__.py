"""A network link in user space between tiers (the kernel here has no netem): a TCP
proxy that shapes bandwidth, delay and jitter per direction (proxy.py), its control API
(control.py) and `strata link` (cli.py)."""
