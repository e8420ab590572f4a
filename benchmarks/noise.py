"""Two identical 16-case CPU sweeps with --repeats 3, compared: how many pairs does `compare`
call "no significant difference"? Every pair should (the target is at least 15 of 16): the two
sweeps measure the same build on the same machine, so any verdict is noise passing for a change.

    .venv/bin/python benchmarks/noise.py [--repeats 3] [--sizes 32,64] [--batches 1,2,4,8]

Fast settings (small images, 0.2-0.5 s timed per process) keep it to a few minutes on 2 cores.
Also prints the same comparison judged from a single process per case (the first process of
each side, as a sweep without --repeats would have measured): what --repeats buys.

    .venv/bin/python benchmarks/noise.py --busy 2 [--repeats 1]

instead runs one quiet sweep and the same sweep with N busy processes (`while True: pass`)
started beside it, and prints how many of the busy sweep's rows the contention guard flagged
(the `noise` column), how many it re-measured, and how far the kept medians are from the quiet
sweep's: what the re-measure recovered.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(out: Path, args) -> float:
    cmd = [sys.executable, "-m", "infersweep", "run", "--backends", "torch,onnxruntime",
           "--devices", "cpu", "--precisions", "fp32", "--sizes", args.sizes, "--batches",
           args.batches, "--repeats", str(args.repeats), "--min-time", "0.2", "--max-time",
           "0.5", "--min-iterations", "10", "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def compare(a: Path, b: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "infersweep", "compare", str(a), str(b),
                           "--format", "json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--keep", type=Path, help="write the two runs here and keep them")
    parser.add_argument("--busy", type=int, default=0,
                        help="busy processes beside the second sweep (the contention guard)")
    args = parser.parse_args()
    if args.busy:
        return busy(args)
    with tempfile.TemporaryDirectory(prefix="infersweep-noise-") as tmp:
        where = args.keep or Path(tmp)
        a, b = where / "a", where / "b"
        walls = [sweep(a, args), sweep(b, args)]
        result = compare(a, b)
        pairs = result["pairs"]
        print(f"sweeps took {walls[0]:.0f} s and {walls[1]:.0f} s")
        for p in pairs:
            if p["ratio"] is None:
                print(f"  {p['label']:<40} {p['verdict']}: {p['note']}")
                continue
            spread = f"{p['ci_low']:.3f}-{p['ci_high']:.3f}"
            print(f"  {p['label']:<40} B/A {p['ratio']:.3f} ({spread}) "
                  f"[{p['interval_from']}, {p['a_repeats']}+{p['b_repeats']} processes] "
                  f"{p['verdict']}")
        same = sum(p["verdict"] == "no significant difference" for p in pairs)
        print(f"{same} of {len(pairs)} pairs: no significant difference "
              f"(target: at least {len(pairs) - 1} of {len(pairs)}) with --repeats {args.repeats}")
        # What one process per case would have said: the first process's median on each side.
        ratios = []
        for p in pairs:
            if p["ratio"] is None:
                continue
            ra = _first_process(a, p["a"]["case_id"])
            rb = _first_process(b, p["b"]["case_id"])
            ratios.append(rb / ra)
        beyond = sum(abs(r - 1) > 0.02 for r in ratios)
        print(f"one process per case: {beyond} of {len(ratios)} pairs differ by more than the "
              f"2% margin (largest {max(abs(r - 1) for r in ratios):.1%}): noise a single-"
              "process comparison cannot see")
        sys.exit(0 if same >= len(pairs) - 1 else 1)


def _first_process(run: Path, case_id: str) -> float:
    rows = json.loads((run / "results.json").read_text())["results"]
    return next(r for r in rows if r["case_id"] == case_id)["process_medians_ms"][0]



def _rows(run: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in json.loads((run / "results.json").read_text())["results"]}


def busy(args) -> None:
    with tempfile.TemporaryDirectory(prefix="infersweep-noise-") as tmp:
        where = args.keep or Path(tmp)
        quiet, loaded = where / "quiet", where / "busy"
        walls = [sweep(quiet, args)]
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
        try:
            walls.append(sweep(loaded, args))
        finally:
            for hog in hogs:
                hog.kill()
        print(f"quiet sweep {walls[0]:.0f} s; sweep beside {args.busy} busy processes "
              f"{walls[1]:.0f} s")
        calm, rows = _rows(quiet), _rows(loaded)
        flagged = remeasured = recovered = 0
        for cid, row in rows.items():
            info = row["info"] or {}
            times = info.get("remeasured", 0)
            flagged += bool(row.get("noise")) or bool(times)
            remeasured += bool(times)
            recovered += bool(times) and not row.get("noise")
            ratio = row["latency_ms_median"] / calm[cid]["latency_ms_median"]
            note = f"  (re-measured {times}x; before: {info.get('noise_remeasured')})" \
                if times else ""
            print(f"  {row['backend']:<12} {row['image_size']:>3}px bs{row['batch_size']:<2} "
                  f"busy/quiet median {ratio:5.2f}  noise: {row.get('noise') or '-'}{note}")
        print(f"{flagged} of {len(rows)} cases were measured while contended (flagged, or "
              f"flagged and re-measured); {remeasured} re-measured, {recovered} of them clean "
              f"on the re-measure; {len(rows) - flagged} never flagged")


if __name__ == "__main__":
    main()
