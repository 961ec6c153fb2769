"""Reading and validating a 1,000-unit SEDA manifest vs parsing the same bytes with lxml alone.

``seda.read_transfer`` (hardened streaming parse into the typed model) and
``seda.validate_transfer`` (plus the official XSD and the structural checks) against a bare
``lxml.etree.fromstring`` of the same manifest, best of five each. Prints one RESULT line.
Issue #3 asks for the 1,000-unit manifest "in well under a second".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common import SHARED, result
from lxml import etree

import seda
from tests.seda.helpers import manifest
from tests.seda.test_validate import unit


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    units = "".join(unit(f"U{i}", dates="<StartDate>2020-01-01</StartDate>") for i in range(1000))
    data = manifest("2.2", units=units)
    xsd = SHARED / "seda-xsd"
    seda.XsdValidator(xsd).schema("2.2")  # compiled once, as in a running service
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    bare = best(lambda: etree.fromstring(data, parser))  # noqa: S320 - the baseline, our bytes
    read = best(lambda: seda.read_transfer(data))
    full = best(lambda: seda.validate_transfer(data, xsd_dir=xsd))
    result(
        f"seda: 1,000-unit manifest ({len(data) // 1024} KiB) read in {read * 1000:.0f} ms, "
        f"read + XSD + structural checks in {full * 1000:.0f} ms; baseline bare lxml parse "
        f"{bare * 1000:.0f} ms; ratio read/bare {read / bare:.1f} (target: well under 1 s)"
    )


if __name__ == "__main__":
    main()
