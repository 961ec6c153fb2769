"""The server process: how ``sae serve`` runs the application, in one process or several.

``sae.app`` builds the FastAPI application; this module runs it — uvicorn in this process or
under uvicorn's supervisor with worker processes, the garbage collector tuned for a
long-running server, and each worker tied to its supervisor's life.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sae.config import Settings
    from sae.runtime import Runtime

log = logging.getLogger("sae.process")

#: The cyclic garbage collector's thresholds in a server process; see :func:`tune_gc`.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Make Python's cyclic garbage collector cheap in a long-running server process.

    Called by ``sae serve`` once the application is built. What is alive then (modules, the
    ORM's mappers, the XSD schemas, the runtime: a few hundred thousand objects that live as
    long as the process) is frozen, so that full collections stop walking it again and again,
    and young collections run every 50,000 allocations instead of 700. Reference counting
    still frees everything at once; cycles are still collected, only less often. Seen here on
    one SIP of 500 records: writing its catalogue took 175-180 ms with the defaults, 50-60 ms
    so (the 2,500 rows built there set off full collections of the whole heap).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def end_with_the_supervisor() -> None:
    """Have this worker process stopped (SIGTERM) when ``sae serve``'s supervisor dies.

    The supervisor stops its workers when it is stopped; killed (SIGKILL, the OOM killer), it
    cannot, and its workers would go on serving the port and writing the database with nobody
    to restart or stop them — beside the new instance an operator starts. Linux only (prctl);
    elsewhere, a no-op.
    """
    import multiprocessing
    import os
    import signal
    import sys

    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
        return
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def worker_app() -> FastAPI:
    """The application of one ``sae serve`` worker process (``SAE_WORKERS`` > 1).

    Each worker opens its own runtime from the same environment as the supervisor.
    """
    from sae.app import create_app
    from sae.config import get_settings
    from sae.logs import configure_logging

    end_with_the_supervisor()
    # A worker is a new process: uvicorn gave it no logging (log_config=None), ours is set here.
    configure_logging(get_settings())
    app = create_app()
    tune_gc()
    return app


def serve_in_this_process(settings: Settings, runtime: Runtime, *, host: str, port: int) -> None:
    """Serve the application on ``runtime`` in this process until stopped (``SAE_WORKERS=1``)."""
    import uvicorn

    from sae.app import create_app

    application = create_app(settings, runtime=runtime)
    tune_gc()
    # log_config=None: uvicorn's loggers (its access log) keep the configuration of sae.logs.
    uvicorn.run(application, host=host, port=port, log_config=None)


def serve_with_workers(workers: int, *, host: str, port: int) -> None:
    """Serve with ``workers`` processes under uvicorn's supervisor until stopped.

    The caller has migrated the database, checked the offers and written the admin token once,
    and closed its runtime: each worker (:func:`worker_app`) opens its own.
    """
    import uvicorn

    uvicorn.run(
        "sae.process:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # each worker configures its logging (worker_app), as sae.logs says
    )
