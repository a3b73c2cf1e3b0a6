"""`bentoml` with a Prometheus multiprocess folder of its own, removed when it exits.

BentoML keeps the metrics of all its workers in one folder, ``$BENTOML_HOME/
prometheus_multiproc_dir``, shared by every BentoML server of the user, and empties it when
a server starts: starting a second server wiped the first one's metrics. `omni serve` and
`omni run` start BentoML through this module instead, which points that folder (BentoML's
``prometheus_multiproc_dir`` setting) at a fresh temporary one::

    python -m serving.bentoml_server serve serving.service:Personalization --port 3000
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

METRICS_FOLDER_PREFIX = "omni-metrics-"
SERVICE = "serving.service:Personalization"
"""The BentoML service `omni serve` starts (also bentofile.yaml's ``service``)."""
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""BLAS on one thread in service workers: requests are small, threads only contend."""

SYSTEM_ARROW_POOL = {"ARROW_DEFAULT_MEMORY_POOL": "system"}
"""Arrow on the system allocator in the workers (unless the environment names another), as
in the live refresh process: mimalloc kept the memory of start-up's reads (snapshot,
identity graph, the store's event ids) for good, 80 MB of a worker's resident memory at
5,000 and at 20,000 customers (issue 17, bench_live_memory.py)."""

FOLLOW_LATEST_ENV = "OMNI_FOLLOW_LATEST"
"""Set to 1 by `omni serve` when it chose the snapshot itself: the service then switches
to each newer one ``LATEST`` names (a snapshot named by ``OMNI_SNAPSHOT`` stays)."""


def service_command(
    snapshot: Path,
    port: int,
    host: str = "127.0.0.1",
    follow_latest: bool = False,
    workers: int = 1,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start the scoring service on ``snapshot``
    with ``workers`` processes: `bentoml serve` through this module (a metrics folder of
    its own), BLAS on one thread. `omni serve` and the main job both start it this way."""
    cmd = [sys.executable, "-m", "serving.bentoml_server", "serve", SERVICE]
    cmd += ["--port", str(port), "--host", host]
    env = {**SYSTEM_ARROW_POOL, **os.environ, **ONE_THREAD, "OMNI_SNAPSHOT": str(snapshot)}
    env[FOLLOW_LATEST_ENV] = "1" if follow_latest else "0"
    env["OMNI_WORKERS"] = str(workers)
    return cmd, env


def main(argv: list[str] | None = None) -> None:
    """Run the bentoml command line with ``argv``, its metrics in a temporary folder."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    folder = tempfile.mkdtemp(prefix=METRICS_FOLDER_PREFIX)
    try:
        BentoMLContainer.prometheus_multiproc_dir.set(folder)
        cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="bentoml")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
