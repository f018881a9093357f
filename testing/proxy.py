"""nginx in front of several edge processes, for the tests and the benchmarks alike.

The config is deploy/nginx.conf.template, the one docs/scaling.md shows, with its
${STRATA_...} names filled in as envsubst would. nginx runs as whoever runs the tests,
from a temporary folder (pid, logs, temporary files), on a free loopback port, and is
stopped by its PID. `make test` installs Debian's nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from edge_server.config import REPO
from edge_server.processes import stop, wait_for_http
from testing.servers import free_port

TEMPLATE = REPO / "deploy" / "nginx.conf.template"
NAME = re.compile(r"\$\{(STRATA_[A-Z_]+)\}")  # nginx's own variables ($host...) have no braces here


def render(values: Mapping[str, str]) -> str:
    """The template with every ${STRATA_...} replaced by values[...]; raise KeyError
    naming any the template uses that `values` lacks."""
    text = TEMPLATE.read_text()
    missing = sorted(set(NAME.findall(text)) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)} in {TEMPLATE.name}")
    return NAME.sub(lambda match: values[match.group(1)], text)


def nginx_binary() -> str | None:
    """Debian's nginx lives in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@contextmanager
def nginx_process(edges: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """nginx on a free loopback port in front of `edges` (base URLs, http://HOST:PORT);
    yield its base URL and process once it answers."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed: run `make test` (it installs Debian's nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="strata-nginx-") as run_dir:
        os.chmod(run_dir, 0o755)  # run as root, nginx's workers are `nobody`: they use the temporary files here
        config = Path(run_dir) / "nginx.conf"
        config.write_text(render({
            "STRATA_RUN_DIR": run_dir, "STRATA_LISTEN": f"127.0.0.1:{port}",
            "STRATA_EDGES": " ".join(f"server {edge.removeprefix('http://')};" for edge in edges)}))
        # -e: the error log before the config is read (the default, /var/log/nginx, may not be writable).
        command = [binary, "-c", str(config), "-p", run_dir, "-e", f"{run_dir}/error.log", "-g", "daemon off;"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", process, timeout=20, log=Path(run_dir) / "error.log")
            yield f"http://127.0.0.1:{port}", process
        finally:
            stop(process)
