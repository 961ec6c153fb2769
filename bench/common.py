"""Shared pieces of the benchmarks: a real ``sae serve``, the machine, baselines, result lines.

Every benchmark prints exactly one line starting with ``RESULT`` (what ``bench/run_all.py``
collects into docs/benchmarks.md): the figure, the baseline measured in the same run, and the
ratio of the two. Work files go under ``$SAE_BENCH_DIR`` (default /tmp/sae-bench), never into
the repository.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from tests.crash.harness import ServerProcess, children, hwm_kib  # noqa: E402

SHARED = REPO.parent / "shared"
HERE_RESULTS = REPO / "bench" / "results"
BENCH_DIR = Path(os.environ.get("SAE_BENCH_DIR", "/tmp/sae-bench"))
PG_ADMIN_URL = os.environ.get(
    "SAE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_BENCH_DB = "sae_bench"


def workdir(name: str) -> Path:
    """A fresh directory for one benchmark, on a settled filesystem (see :func:`settle`)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    settle()
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=BENCH_DIR))


def settle() -> None:
    """Let the filesystem finish the work left by earlier deletions before measuring.

    On ext4 mounted with ``discard`` (this machine), freeing many files queues TRIMs that the
    next journal commits carry out: every fsync in the seconds after a large ``rm -r`` waits
    for them. Seen here: 600 one-document deposits ran at 44/s right after the baseline deleted
    its 600 copies, 74/s without that deletion. ``sync`` makes the pending commits happen now.
    """
    os.sync()
    time.sleep(1)


def result(line: str) -> None:
    """The one line a benchmark prints."""
    print(f"RESULT {line}", flush=True)


def machine() -> str:
    """One line describing the machine (cores, CPU, RAM, Python, SQLite, disk)."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        sha_ni = Path("/proc/cpuinfo").read_text().count(" sha_ni")
    except OSError:
        sha_ni = 0
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    fs = subprocess.run(
        ["df", "-T", str(BENCH_DIR.parent)], capture_output=True, text=True, check=False
    ).stdout.splitlines()[-1:]
    fstype = fs[0].split()[1] if fs else "?"
    return (
        f"{os.cpu_count()} cores {cpu} ({sha_ni} with sha_ni), {mem:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {fstype} under {BENCH_DIR.parent}"
    )


def xsd_env() -> dict[str, str]:
    """Production-like: validate against the official XSDs when ../shared has them."""
    xsd = SHARED / "seda-xsd"
    return {"SAE_SEDA_XSD_DIR": str(xsd)} if (xsd / "2.2").is_dir() else {}


# --- PostgreSQL --------------------------------------------------------------------------------


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the ``sae_bench`` database (created if needed); yields SAE's URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("select 1 from pg_database where datname = :n"), {"n": PG_BENCH_DB}
        ).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{PG_BENCH_DB}"'))
    admin.dispose()
    base = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}"
    engine = create_engine(base)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


# --- the server --------------------------------------------------------------------------------


@dataclass
class Server:
    """A started ``sae serve`` and a thread sampling its peak RSS."""

    process: ServerProcess
    peak_kib: int = 0
    #: Each thread's CPU seconds at each :meth:`cpu_seconds` call (with ``SAE_BENCH_PYSPY``).
    thread_marks: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _hwm_kib(self) -> int:
        """Peak RSS of the server: its own, plus its worker processes' (SAE_WORKERS > 1)."""
        pid = self.process.pid
        return hwm_kib(pid) + sum(hwm_kib(child) for child in children(pid))

    def watch(self) -> None:
        def sample() -> None:
            while not self._stop.wait(0.2):
                self.peak_kib = max(self.peak_kib, self._hwm_kib())

        threading.Thread(target=sample, daemon=True).start()

    def peak_mib(self) -> float:
        self.peak_kib = max(self.peak_kib, self._hwm_kib())
        return self.peak_kib / 1024

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds (user, system) the server's processes have used so far: the work a
        deposit costs, which the machine's other load disturbs less than the wall clock.

        With ``SAE_BENCH_PYSPY``, each call also notes every thread's CPU so far (by thread
        id): the profile names the threads, ``bench/threads_cpu.py`` divides between them the
        CPU of the benchmark's window (from its first call to its second)."""
        pid = self.process.pid
        times = [_cpu_seconds(p) for p in (pid, *children(pid))]
        if os.environ.get("SAE_BENCH_PYSPY"):
            marks = {
                str(tid): sum(_task_cpu_seconds(p, tid))
                for p in (pid, *children(pid))
                for tid in _tasks(p)
            }
            marks["processes"] = sum(sum(t) for t in times)  # ended threads included
            self.thread_marks.append(marks)
        return sum(t[0] for t in times), sum(t[1] for t in times)


def _tasks(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _stat_cpu_seconds(stat_path: str) -> tuple[float, float]:
    """(utime, stime) from a /proc ``stat`` file, in seconds ((0, 0) when it is gone)."""
    try:
        stat = Path(stat_path).read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _task_cpu_seconds(pid: int, tid: int) -> tuple[float, float]:
    """(utime, stime) of one thread of ``pid``."""
    return _stat_cpu_seconds(f"/proc/{pid}/task/{tid}/stat")


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` from /proc, in seconds ((0, 0) when it is gone)."""
    return _stat_cpu_seconds(f"/proc/{pid}/stat")


@contextmanager
def server(
    directory: Path,
    *,
    database_url: str | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``sae serve`` on ``directory`` (SQLite unless ``database_url``), XSDs on.

    ``SAE_*`` variables of the benchmark's environment are passed on (``SAE_INGEST_THREADS=4
    bench/bench_corpus.py`` measures that setting), except the ones set here; ``extra_env``
    last (``SAE_WITNESSES_FILE`` for bench_transfers ``--witnesses``).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("SAE_") and not k.startswith("SAE_BENCH_")
    }
    env.update(xsd_env())
    if database_url:
        env["SAE_DATABASE_URL"] = database_url
    env["SAE_WORKERS"] = str(workers)
    env.update(extra_env or {})
    # Another revision's server, for bench/compare_trees.py: the benchmark (its clients, its
    # baseline, its result line) stays this one; only ``sae serve`` comes from that tree.
    tree = os.environ.get("SAE_BENCH_TREE")
    process = ServerProcess(directory / "sae-data", env=env, tree=Path(tree) if tree else None)
    process.start()
    srv = Server(process)
    srv.watch()
    tracer = _strace(process.pid, os.environ.get("SAE_BENCH_STRACE"))
    profiler = _pyspy(process.pid, os.environ.get("SAE_BENCH_PYSPY"))
    try:
        yield srv
    finally:
        srv._stop.set()
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)  # detaches and writes its summary
            tracer.wait(timeout=60)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # stops sampling and writes its file
            profiler.wait(timeout=120)
            marks = Path(str(os.environ["SAE_BENCH_PYSPY"]) + ".threads.json")
            marks.write_text(json.dumps(srv.thread_marks))
        process.stop()


def _strace(pid: int, output: str | None) -> subprocess.Popen[bytes] | None:
    """``strace -f -C`` on the started server, writing to ``output`` (``SAE_BENCH_STRACE``):
    every file and descriptor call of the deposits, then the count of every system call. The
    counts, unlike the time, do not depend on the machine's other load (bench/compare_trees.py
    divides them by the transfers). Started after the server is up: its start is not counted."""
    if not output:
        return None
    calls = "trace=%file,%desc,fsync,fdatasync,fsetxattr,fgetxattr"
    tracer = subprocess.Popen(
        ["strace", "-f", "-C", "-qq", "-e", calls, "-o", output, "-p", str(pid)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached to every thread before the first deposit
    return tracer


def _pyspy(pid: int, output: str | None) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` on the started server and its worker processes, every thread sampled
    while not idle (no ``--idle``), writing raw folded stacks to ``output``
    (``SAE_BENCH_PYSPY``; the binary from ``SAE_BENCH_PYSPY_BIN``, default ``py-spy`` on the
    PATH). Where the server's time goes during the whole run, warm-up included: sampling costs
    CPU of its own, so the run's figures are not timings."""
    if not output:
        return None
    binary = os.environ.get("SAE_BENCH_PYSPY_BIN", "py-spy")
    # SAE_BENCH_PYSPY_GIL=1: only the thread holding the GIL is sampled, which is where
    # Python's own CPU goes (a thread waiting for the database or for fsync is left out).
    gil = ["--gil"] if os.environ.get("SAE_BENCH_PYSPY_GIL") == "1" else []
    profiler = subprocess.Popen(
        [
            binary,
            "record",
            *gil,
            "--threads",
            "--subprocesses",
            "--nonblocking",
            "--format",
            "raw",
            "-r",
            "100",
            "-o",
            output,
            "-p",
            str(pid),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return profiler


# --- deposits ----------------------------------------------------------------------------------


class Depositor:
    """POSTs SIPs on one kept-alive HTTP/1.1 connection, with the standard library's client.

    The clients run on the same two cores as the server, so what they cost is taken from it.
    httpx spends much more CPU sending a large body: one SIP of the a3m corpus (88 MiB) was
    accepted 0.5-0.6 s sooner with ``http.client`` or ``curl`` than with httpx (1.4-2.0 s), the
    server doing the same work. Files are sent in 1 MiB blocks.
    """

    def __init__(self, process: ServerProcess, timeout: float = 600) -> None:
        self._conn = http.client.HTTPConnection(
            "127.0.0.1", process.port, timeout=timeout, blocksize=1 << 20
        )
        self._headers = {**process.headers(), "Content-Type": "application/zip"}

    def post(self, body: bytes | BinaryIO, size: int | None = None) -> tuple[int, object]:
        """(status, decoded JSON body or None) of one deposit."""
        headers = dict(self._headers)
        if size is not None:
            headers["Content-Length"] = str(size)
        try:
            self._conn.request("POST", "/api/v1/transfers", body=body, headers=headers)
            response = self._conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()  # reconnects on the next request
            return 0, None
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Depositor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def deposit_all(
    process: ServerProcess, sips: Sequence[bytes], clients: int
) -> tuple[float, int, dict[int, int]]:
    """POST every SIP with ``clients`` concurrent clients; (wall seconds, 201s, other statuses)."""
    lock = threading.Lock()
    queue = list(reversed(range(len(sips))))
    ok = 0
    others: dict[int, int] = {}

    def client() -> None:
        nonlocal ok
        with Depositor(process) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                status, _ = c.post(sips[i])
                with lock:
                    if status == 201:
                        ok += 1
                    else:
                        others[status] = others.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, ok, others


# --- baselines ---------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def python_hash_copy_fsync(files: Sequence[Path], dest: Path) -> float:
    """The plain limit: read, SHA-512, write and fsync each file (and the directory); seconds."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)

    def run() -> None:
        for i, src in enumerate(files):
            data = src.read_bytes()
            hashlib.sha512(data).hexdigest()
            target = dest / f"{i:06d}"
            with target.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        fd = os.open(dest, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    seconds = timed(run)
    # The copies stay until the benchmark's work directory goes: deleting them now would slow
    # down what is measured next (see settle()).
    return seconds


def warm(files: Sequence[Path]) -> None:
    """Read the files once so that every contender starts from the page cache."""
    for f in files:
        with f.open("rb") as fh:
            while fh.read(1 << 20):
                pass


def errors_note(others: dict[int, int]) -> str:
    if not others:
        return "no failure"
    return "FAILED deposits " + ", ".join(
        f"{n} x {'no answer' if s == 0 else f'HTTP {s}'}" for s, n in sorted(others.items())
    )


# --- SIPs --------------------------------------------------------------------------------------


def sip_of_files(
    message_id: str, blobs: Sequence[tuple[str, bytes]], *, deflate: bool = False
) -> bytes:
    """A SIP with one archive unit per file (a record = a unit), under one root unit; the files
    stored in the zip as they are (as ``sae deposit`` packs scans) unless ``deflate``."""
    from tests.sipfactory import FileSpec, SipSpec, UnitSpec, build_zip

    spec = SipSpec(
        message_id=message_id,
        producer="BENCH",
        transferring="BENCH",
        files=[FileSpec(uri=f"Content/{name}", data=data) for name, data in blobs],
        units=[
            UnitSpec(
                id="AU-root",
                title=f"Bench {message_id}",
                level="File",
                children=[
                    UnitSpec(id=f"AU-{i}", title=name, files=[i])
                    for i, (name, _) in enumerate(blobs)
                ],
            )
        ],
    )
    return build_zip(spec, store_files=not deflate)
