"""Run the operator under tracemalloc and say where its memory goes (bench only).

    python -m bench.traced OUT.json -- -m controller run -n NS ...

Starts ``tracemalloc`` (``BENCH_TRACE_FRAMES`` frames, default 25) before the
operator imports anything, then runs ``python -m controller`` in this process.
On SIGUSR1 it takes a snapshot and writes OUT.json: live traced bytes, the
traced peak, and the live bytes grouped three ways:

- ``by_package``: the package of the allocating frame (kopf, botocore, ...);
- ``by_our_frame``: the innermost frame in ``controller/`` on the allocation's
  stack (which of our lines caused it, whoever allocated), else the package;
- ``top_lines``: the allocating file:line.

The benchmark sends SIGUSR1 once every resource is Ready. Tracing slows the
operator down (figures of such a run are not representative of CPU or time).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
import tracemalloc
from collections import Counter
from pathlib import Path

FRAMES = int(os.environ.get("BENCH_TRACE_FRAMES", "25"))
REPO = str(Path(__file__).resolve().parents[1])


def package_of(filename: str) -> str:
    """Pure: a short name for the code a file belongs to."""
    if filename.startswith(REPO + "/controller/"):
        return "controller/" + filename[len(REPO) + len("/controller/"):]
    marker = "site-packages/"
    if marker in filename:
        return filename.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python" in filename:
        return "stdlib:" + filename.rsplit("/lib/python", 1)[1].split("/", 2)[-1].split("/", 1)[0].removesuffix(".py")
    return filename


def summarise(snapshot: tracemalloc.Snapshot, top: int = 30) -> dict:
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    by_package: Counter[str] = Counter()
    by_ours: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    total = 0
    for trace in snapshot.traces:
        size = trace.size
        total += size
        frames = list(reversed(trace.traceback))  # tracemalloc stores oldest first; most recent first here
        first = frames[0]
        by_package[package_of(first.filename)] += size
        lines[f"{package_of(first.filename)}:{first.lineno}"] += size
        ours = next((f for f in frames if f.filename.startswith(REPO + "/controller/")), None)
        by_ours[f"{package_of(ours.filename)}:{ours.lineno}" if ours else "(not under controller/) "
                + package_of(first.filename)] += size

    def mib(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / 2**20, 2)) for k, v in counter.most_common(top)]

    current, peak = tracemalloc.get_traced_memory()
    return {"frames": FRAMES, "live_traced_mib": round(total / 2**20, 1),
            "traced_current_mib": round(current / 2**20, 1), "traced_peak_mib": round(peak / 2**20, 1),
            "by_package": mib(by_package), "by_our_frame": mib(by_ours), "top_lines": mib(lines)}


def main() -> None:
    out = Path(sys.argv[1])
    rest = sys.argv[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if rest[:1] != ["-m"] or len(rest) < 2:
        raise SystemExit("usage: python -m bench.traced OUT.json -- -m MODULE ARGS...")
    tracemalloc.start(FRAMES)

    def write() -> None:
        try:
            text = json.dumps(summarise(tracemalloc.take_snapshot()), indent=1)
        except Exception as error:  # said in the file the benchmark waits for, not lost in a thread
            text = json.dumps({"error": repr(error)})
        out.write_text(text)

    def dump(signum: int, frame: object) -> None:
        # Off the event loop's thread: summarising a large snapshot takes seconds.
        threading.Thread(target=write, daemon=True).start()

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = [rest[1], *rest[2:]]
    runpy.run_module(rest[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
