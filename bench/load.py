"""Load: mixed traffic at the rate the machine holds, then ``sae journal verify`` and a full
``sae audit``; zero errors and zero lost acknowledged transfers expected. Not in the test suite.

Workers, all at once against one ``sae serve`` (SQLite by default, PostgreSQL with
``--database postgresql``): depositors (one-PDF SIPs of 20-300 KiB, now and then a 5 MiB one),
readers (an archived object's bytes, SHA-512 checked), searchers (``/units?q=``), auditors
(an object's proof bundle, checked with ``sae.journal.bundle.verify_bundle``). At the end every
acknowledged transfer is read back, the journal verified and every copy audited.

    .venv/bin/python bench/load.py [--minutes 3] [--database sqlite|postgresql] [--workers 1]

Prints one RESULT line and saves it, with the details, to bench/results/load.txt (copied into
docs/benchmarks.md by run_all.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import shutil
import threading
import time
from collections import Counter

import httpx
from common import (
    HERE_RESULTS,
    machine,
    postgres_schema,
    result,
    server,
    sip_of_files,
    workdir,
)

from sae.journal.bundle import verify_bundle
from tests.crash.harness import download_sha512


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = {}
        self.acked: list[tuple[str, dict[str, str]]] = []  # transfer id, object id -> sha512
        self.bytes_in = 0

    def record(self, kind: str, seconds: float, ok: bool, why: str = "") -> None:
        with self.lock:
            self.calls[kind] += 1
            self.latency.setdefault(kind, []).append(seconds)
            if not ok:
                self.errors[f"{kind}: {why}"] += 1

    def sample_object(self, rng: random.Random) -> tuple[str, str] | None:
        with self.lock:
            if not self.acked:
                return None
            objects = rng.choice(self.acked)[1]
            return rng.choice(sorted(objects.items()))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0


def depositor(n: int, srv_client: httpx.Client, stats: Stats, stop: threading.Event) -> None:
    rng = random.Random(n)
    i = 0
    while not stop.is_set():
        i += 1
        size = 5 << 20 if rng.random() < 0.03 else rng.randint(20_000, 300_000)
        data = b"%PDF-1.4\n" + rng.randbytes(size)
        sip = sip_of_files(f"LOAD-{n}-{i}", [(f"acte-{n}-{i}.pdf", data)])
        started = time.perf_counter()
        try:
            r = srv_client.post(
                "/api/v1/transfers", content=sip, headers={"Content-Type": "application/zip"}
            )
            ok, why = r.status_code == 201, f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            ok, why = False, type(exc).__name__
        stats.record("deposit", time.perf_counter() - started, ok, why)
        if ok:
            body = r.json()
            with stats.lock:
                stats.bytes_in += len(data)
                stats.acked.append(
                    (body["transfer_id"], {o["id"]: o["sha512"] for o in body["objects"]})
                )


def reader(n: int, c: httpx.Client, stats: Stats, stop: threading.Event) -> None:
    rng = random.Random(100 + n)
    words = ["acte", "Bench", "LOAD", "délibération", "1", "pdf"]
    while not stop.is_set():
        kind = rng.choice(["read", "read", "search", "proof"])
        picked = stats.sample_object(rng)
        if picked is None:
            time.sleep(0.2)
            continue
        object_id, sha = picked
        started = time.perf_counter()
        try:
            if kind == "read":
                status, got, _ = download_sha512(c, object_id)
                ok = status == 200 and got == sha
                why = f"HTTP {status}" if status != 200 else "SHA-512 mismatch"
            elif kind == "search":
                r = c.get("/api/v1/units", params={"q": rng.choice(words), "limit": 20})
                ok, why = r.status_code == 200, f"HTTP {r.status_code}"
            else:
                r = c.get(f"/api/v1/objects/{object_id}/proof")
                ok, why = r.status_code == 200, f"HTTP {r.status_code}"
                if ok:
                    report = verify_bundle(r.content)
                    ok, why = report.valid, "bundle does not verify"
        except httpx.HTTPError as exc:
            ok, why = False, type(exc).__name__
        stats.record(kind, time.perf_counter() - started, ok, why)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--depositors", type=int, default=3)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (SAE_WORKERS; one per core)"
    )
    args = parser.parse_args()
    work = workdir("load")
    stats = Stats()
    stop = threading.Event()
    started_at = dt.datetime.now(dt.UTC)
    try:
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(postgres_schema()) if args.database == "postgresql" else None
            srv = stack.enter_context(server(work, database_url=url, workers=args.workers))
            clients = [
                stack.enter_context(srv.process.client(timeout=600))
                for _ in range(args.depositors + args.readers)
            ]
            threads = [
                threading.Thread(target=depositor, args=(i, clients[i], stats, stop))
                for i in range(args.depositors)
            ] + [
                threading.Thread(target=reader, args=(i, clients[args.depositors + i], stats, stop))
                for i in range(args.readers)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(args.minutes * 60)
            stop.set()
            for t in threads:
                t.join(timeout=600)
            traffic = time.perf_counter() - t0
            # Zero lost acknowledged transfers: every one read back, bytes and all.
            lost = 0
            with srv.process.client(timeout=600) as c:
                for transfer_id, objects in stats.acked:
                    t = c.get(f"/api/v1/transfers/{transfer_id}")
                    if t.status_code != 200 or t.json()["status"] != "OK":
                        lost += 1
                        continue
                    for object_id, sha in objects.items():
                        status, got, _ = download_sha512(c, object_id)
                        if (status, got) != (200, sha):
                            lost += 1
            peak = srv.peak_mib()
            srv._stop.set()
            srv.process.stop()
            t1 = time.perf_counter()
            verify = srv.process.cli("journal", "verify", timeout=3600)
            t_verify = time.perf_counter() - t1
            t1 = time.perf_counter()
            audit = srv.process.cli("audit", "--json", timeout=3600)
            t_audit = time.perf_counter() - t1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        audit_report = json.loads(audit.stdout)
        audit_summary = (
            f"{audit_report['checked']} copies checked, {len(audit_report['problems'])} problems"
        )
    except (json.JSONDecodeError, KeyError):
        audit_summary = f"unreadable report (exit {audit.returncode})"
    journal = verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else verify.stderr
    errors = sum(stats.errors.values())
    calls = sum(stats.calls.values())
    line = (
        f"load {args.database}, SAE_WORKERS={args.workers}, {traffic / 60:.1f} min, "
        f"{args.depositors} depositors + "
        f"{args.readers} readers: {calls / traffic:.1f} requests/s "
        f"({stats.calls['deposit'] / traffic:.1f} deposits/s, "
        f"{stats.bytes_in / 2**20 / traffic:.1f} MiB/s in); {errors} errors; "
        f"{len(stats.acked)} acknowledged transfers, {lost} lost; journal verify exit "
        f"{verify.returncode} ({t_verify:.0f} s); audit exit {audit.returncode}: {audit_summary} "
        f"({t_audit:.0f} s); server peak RSS {peak:.0f} MiB"
    )
    result(line)
    details = [
        f"- run: {started_at:%Y-%m-%d %H:%M} UTC, `bench/load.py --minutes {args.minutes} "
        f"--database {args.database} --workers {args.workers}`",
        f"- machine: {machine()}",
        f"- result: {line}",
        f"- journal verify: {journal.strip()[:300]}",
        "",
        "| request | calls | per second | p95 latency | errors |",
        "|---|---|---|---|---|",
    ]
    for kind in ("deposit", "read", "search", "proof"):
        n = stats.calls[kind]
        errs = sum(v for k, v in stats.errors.items() if k.startswith(f"{kind}:"))
        details.append(
            f"| {kind} | {n} | {n / traffic:.1f} | {p95(stats.latency.get(kind, [])) * 1000:.0f}"
            f" ms | {errs} |"
        )
    if stats.errors:
        details += ["", "Errors: " + "; ".join(f"{k} x{v}" for k, v in stats.errors.items())]
    HERE_RESULTS.mkdir(exist_ok=True)
    (HERE_RESULTS / "load.txt").write_text("\n".join(details) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
