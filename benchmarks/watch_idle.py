"""What an idle ``dffbatch watch`` costs: CPU share of its process over a quiet interval.

    python benchmarks/watch_idle.py [--files 10000] [--seconds 30] [--events auto poll]

Writes ``--files`` small PNG frames (stacks of 8) to a temporary folder, starts
``dffbatch watch`` on it with ``watch.marker: DONE`` (no stack is marked, so nothing
runs: what is measured is the watching alone), waits until it is watching, then reads
the process's CPU time (user + system, /proc/PID/stat) at the start and the end of
``--seconds`` of quiet. Prints one line per event mode: ``auto`` (watchdog's inotify
observer) and ``poll`` (a rescan every ``watch.poll`` seconds, 5 by default).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def cpu_seconds(pid) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--events", nargs="+", default=["auto", "poll"])
    a = ap.parse_args(argv)
    from dffbatch.stages.write import png_bytes
    frame = png_bytes(np.zeros((16, 16), np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        for i in range(a.files):
            folder = os.path.join(data, f"s{i // 8:05d}")
            if i % 8 == 0:
                os.makedirs(folder)
            with open(os.path.join(folder, f"f{i % 8}.png"), "wb") as fh:
                fh.write(frame)
        for mode in a.events:
            cfg = os.path.join(tmp, f"{mode}.yaml")
            with open(cfg, "w") as fh:
                fh.write(f"run: {{name: {mode}, output: {os.path.join(tmp, 'out')}}}\ndatasets: [{data}]\n"
                         f"watch: {{marker: DONE, events: {mode}}}\n")
            proc = subprocess.Popen([sys.executable, "-m", "dffbatch", "watch", cfg, "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
            try:
                line = proc.stdout.readline()
                time.sleep(3.0)  # past the first scan
                c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(a.seconds)
                c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(f"{mode:5s}: {a.files} files in {a.files // 8} stacks; idle CPU {100 * (c1 - c0) / (t1 - t0):.2f}% "
                  f"of a core over {t1 - t0:.0f} s ({line.strip()[:90]}...)")


if __name__ == "__main__":
    main()
