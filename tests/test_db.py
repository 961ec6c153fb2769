"""Database plumbing shared by every domain: the writers' turns on a shared SQLite file."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from sae.db import WriterTurns


def test_writer_turns_exclude_each_other_and_hand_over_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sae.db'}"
    first, second = WriterTurns(url), WriterTurns(url)  # as two processes: two open files
    order: list[str] = []
    try:
        with first.turn():
            waiter = threading.Thread(target=lambda: _take(second, order))
            waiter.start()
            time.sleep(0.3)
            order.append("first done")
        waiter.join(5)
        assert order == ["first done", "second in"]
    finally:
        first.close()
        second.close()
    assert (tmp_path / "sae.db.writer-lock").is_file()


def _take(turns: WriterTurns, order: list[str]) -> None:
    with turns.turn():
        order.append("second in")


def test_a_dead_holder_gives_the_turn_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sae.db'}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from sae.db import WriterTurns\n"
            f"t = WriterTurns({url!r})\n"
            "with t.turn():\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        holder.kill()  # SIGKILL while holding the turn
        holder.wait(10)
        turns = WriterTurns(url)
        taken = threading.Event()
        thread = threading.Thread(target=lambda: _enter(turns, taken), daemon=True)
        thread.start()
        assert taken.wait(5), "the turn of a killed process was not released"
        thread.join(5)
        turns.close()
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def _enter(turns: WriterTurns, taken: threading.Event) -> None:
    with turns.turn():
        taken.set()


def test_no_turns_where_the_database_queues_its_writers(tmp_path: Path) -> None:
    for url in ("sqlite://", "postgresql+psycopg://sae@db/sae"):
        turns = WriterTurns(url)
        with turns.turn(), turns.turn():  # a no-op: nested turns do not block
            pass
        turns.close()
    assert list(tmp_path.iterdir()) == []
