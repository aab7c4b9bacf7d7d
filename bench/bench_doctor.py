"""``studyapp doctor`` wall time on a fresh data dir: median and min of N runs, each in a new process and dir.

    python bench/bench_doctor.py --runs 5 [--tree /path/to/a/checkout] [--enrolled] [-- EXTRA DOCTOR ARGS]

``--tree`` picks the source tree to run (PYTHONPATH), so the code before and after a change can be timed with the
same interpreter; the default is this checkout. ``--enrolled`` first enrolls each fresh data dir in
examples/study.toml (no server needed: doctor only reads), where doctor also reports collection and the anonymizer.
Each run is ``python -m studyapp doctor`` timed from spawn to exit (wall), with the CPU time (user + system) the
process used beside it: on a loaded machine the wall time stretches, the CPU time much less. The load average is
printed with the result.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ENROLL = """
import sys
from pathlib import Path
from studyapp.store.db import open_database
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import load_protocol
db = open_database(Path(sys.argv[1]) / "studyapp.db")
save_enrollment(db, load_protocol(Path(sys.argv[2])), participant_id="bench", server_url="http://127.0.0.1:9")
db.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to run (default: this checkout)")
    parser.add_argument("--enrolled", action="store_true", help="enroll each fresh data dir in examples/study.toml")
    parser.add_argument("doctor_args", nargs="*", help="extra arguments for doctor (after --)")
    args = parser.parse_args()
    times: list[float] = []
    cpu: list[float] = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="studyapp-doctor-") as tmp:
            data_dir = Path(tmp) / "data"
            env = {**os.environ, "PYTHONPATH": str(args.tree), "STUDYAPP_DATA_DIR": str(data_dir)}
            if args.enrolled:
                data_dir.mkdir(mode=0o700)
                subprocess.run([sys.executable, "-c", ENROLL, str(data_dir), str(ROOT / "examples" / "study.toml")],
                               env=env, check=True, cwd=args.tree)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "studyapp", "doctor", *args.doctor_args], env=env,
                                  cwd=args.tree, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if n == 0:
                print(done.stdout, end="")
            print(f"run {n + 1}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU (exit {done.returncode})", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    print(f"median {statistics.median(times):.2f} s wall (min {min(times):.2f} s), median "
          f"{statistics.median(cpu):.2f} s CPU over {len(times)} runs; "
          f"load average {' '.join(f'{x:.2f}' for x in load)}")


if __name__ == "__main__":
    main()
