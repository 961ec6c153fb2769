"""``make bench``: run every benchmark, write docs/benchmarks.md (machine, date, one table).

Each script prints its figure, the baseline measured in the same run and their ratio; this
collects those lines. ``--quick`` runs reduced sizes (a smoke test of the scripts, not figures
to publish); ``--only NAME`` reruns some: each benchmark's latest result is kept in
bench/results/NAME.json and the document is rebuilt from all of them. The load test
(bench/load.py) is not run here (it takes minutes); its last result, saved in
bench/results/load.txt, is copied into the document.

    .venv/bin/python bench/run_all.py [--quick] [--only large --only corpus-one ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402

# name, script, full arguments, quick arguments, what it measures
BENCHES: list[tuple[str, str, list[str], list[str], str]] = [
    (
        "large",
        "bench_large.py",
        ["--mib", "2048"],
        ["--mib", "256"],
        "one 2 GiB file vs sha512sum + cp; server peak RSS",
    ),
    (
        "transfers-sqlite",
        "bench_transfers.py",
        ["--database", "sqlite"],
        ["--database", "sqlite", "--sips", "200"],
        "2,000 one-PDF SIPs, 8 clients, SQLite",
    ),
    (
        "transfers-sqlite-2",
        "bench_transfers.py",
        ["--database", "sqlite", "--workers", "2"],
        ["--database", "sqlite", "--sips", "200", "--workers", "2"],
        "2,000 one-PDF SIPs, 8 clients, SQLite, SAE_WORKERS=2 (one per core)",
    ),
    (
        "transfers-postgresql",
        "bench_transfers.py",
        ["--database", "postgresql"],
        ["--database", "postgresql", "--sips", "200"],
        "2,000 one-PDF SIPs, 8 clients, PostgreSQL, one server process",
    ),
    (
        "transfers-postgresql-2",
        "bench_transfers.py",
        ["--database", "postgresql", "--workers", "2"],
        ["--database", "postgresql", "--sips", "200", "--workers", "2"],
        "2,000 one-PDF SIPs, 8 clients, PostgreSQL, SAE_WORKERS=2 (one per core)",
    ),
    (
        "manyfiles",
        "bench_manyfiles.py",
        ["--files", "5000"],
        ["--files", "500"],
        "one SIP of 5,000 small files",
    ),
    (
        "peer-a3m",
        "bench_peer.py",
        ["--records", "500", "--mode", "full"],
        ["--records", "50", "--mode", "full"],
        "the peer: a3m (default configuration) on the 500-record corpus, in this run",
    ),
    (
        "corpus-one",
        "bench_corpus.py",
        ["--mode", "one-sip"],
        ["--mode", "one-sip"],
        "a3m corpus: one SIP of 500 records",
    ),
    (
        "corpus-many",
        "bench_corpus.py",
        ["--mode", "many-sips"],
        ["--mode", "many-sips"],
        "a3m corpus: 500 SIPs of one record, 8 clients",
    ),
    (
        "corpus-many-2",
        "bench_corpus.py",
        ["--mode", "many-sips", "--workers", "2"],
        ["--mode", "many-sips", "--workers", "2"],
        "a3m corpus: 500 SIPs of one record, 8 clients, SAE_WORKERS=2 (one per core)",
    ),
    (
        "audit",
        "bench_audit.py",
        ["--objects", "10000", "--size-mib", "0.1"],
        ["--objects", "500", "--size-mib", "0.1"],
        "fixity audit of 10,000 objects vs sha512sum",
    ),
    (
        "s3-ingest",
        "bench_s3_ingest.py",
        ["--mib", "256"],
        ["--mib", "32"],
        "one 256 MiB object to Ceph RGW (Object Lock) vs a plain multipart upload, Ceph and "
        "the client sharing the CPUs",
    ),
    (
        "s3-ingest-split",
        "bench_s3_ingest.py",
        ["--mib", "256", "--split"],
        ["--mib", "32", "--split"],
        "the same with Ceph on a CPU of its own, as a remote offer",
    ),
    (
        "seda",
        "bench_seda.py",
        [],
        [],
        "reading and validating a 1,000-unit SEDA manifest vs a bare lxml parse",
    ),
    (
        "journal",
        "bench_journal.py",
        [],
        ["--leaves", "20000"],
        "journal: append, proofs, verify (1,000,000 leaves)",
    ),
    (
        "witness",
        "bench_witness.py",
        [],
        ["--leaves", "20000", "--requests", "50"],
        "sae witness: add-checkpoint round trip on the loopback at 1,000,000 leaves",
    ),
    (
        "ocr",
        "bench_ocr.py",
        ["--pages", "4", "--rounds", "2"],
        ["--pages", "1", "--rounds", "1"],
        "server-side OCR (SAE_OCR): pages per minute vs ocrmypdf alone on the same scans",
    ),
]


QUICK = " (QUICK run: reduced sizes, not figures to publish)"


def run(script: str, args: list[str]) -> tuple[list[str], float, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    results = [ln.removeprefix("RESULT ") for ln in lines if ln.startswith("RESULT ")]
    if not results:
        # The journal and audit scripts print their lines without the prefix.
        results = [ln for ln in lines if "ratio" in ln] or lines[-3:]
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    if proc.returncode != 0:
        results.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    return results, seconds, status


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    RESULTS.mkdir(exist_ok=True)
    for name, script, full, quick, _what in BENCHES:
        if args.only and name not in args.only:
            continue
        argv = quick if args.quick else full
        print(f"== {name}: {script} {' '.join(argv)}", flush=True)
        results, seconds, status = run(script, argv)
        for line in results:
            print(f"   {line}", flush=True)
        saved = {
            "results": results,
            "seconds": seconds,
            "status": status,
            "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}",
            "command": f"bench/{script} {' '.join(argv)}",
            "quick": args.quick,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(saved, indent=1), encoding="utf-8")
    # The document shows the latest saved result of every benchmark (--only reruns some).
    rows = []
    for name, _script, _full, _quick, what in BENCHES:
        path = RESULTS / f"{name}.json"
        if path.is_file():
            rows.append((name, what, json.loads(path.read_text(encoding="utf-8"))))
    load = RESULTS / "load.txt"
    doc = [
        "# Benchmarks",
        "",
        "Measured, not claimed (issue #7): every figure comes with a baseline measured in the same",
        "run on the same machine, and their ratio. Regenerate with `make bench`",
        "(`bench/run_all.py`; about 15 minutes). The machine is shared and noisy: believe a",
        "change only above ~15 %.",
        "",
        f"- generated: {started:%Y-%m-%d %H:%M} UTC{QUICK if args.quick else ''}; each row"
        " says when it ran",
        f"- machine: {machine()}",
        f"- commit: {git_head()}",
        "- server: `sae serve` (one process unless stated), SQLite unless stated, one local WORM",
        "  offer, official SEDA XSDs on, built-in TSA; the clients run on the same two cores.",
        "",
        "| benchmark | what | result (figure; baseline; ratio) | run |",
        "|---|---|---|---|",
    ]
    for name, what, saved in rows:
        body = "<br>".join(cell(r) for r in saved["results"]) or "(no output)"
        if saved["status"] != "ok":
            body = f"**{saved['status']}** {body}"
        quick = " QUICK" if saved.get("quick") else ""
        doc.append(
            f"| {name} | {cell(what)} | {body} | {saved['date']} UTC{quick}, "
            f"{saved['seconds']:.0f} s, `{saved['command']}` |"
        )
    doc += ["", *STATIC_NOTES]
    if load.is_file():
        doc += ["", "## Load (bench/load.py)", "", *load.read_text().strip().splitlines()]
    args.output.write_text("\n".join(doc) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


def git_head() -> str:
    proc = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()[:100] or "?"


STATIC_NOTES = (
    (HERE / "NOTES.md").read_text(encoding="utf-8").splitlines()
    if (HERE / "NOTES.md").is_file()
    else []
)


if __name__ == "__main__":
    main()
