"""The original grid on one GPU: cold, warm, and the old path, with each case's median side by side.

    PYTHONPATH=src python3 benchmarks/seed_grid.py --root DIR --phase cold|warm|old|report

The grid is the one from the report that started infersweep: resnet18, torch, torch-compile and
onnxruntime on CUDA, fp32 and fp16, 224/256/384/512 px, batches 16/32/64: 72 cases. One phase per
call, because a device command is capped at 10 minutes; the phases share DIR:
- cold: an empty infersweep cache (ONNX exports, Inductor/Triton kernels, references) and a fresh
  run directory, the default (fast) path: long-lived workers, a builder process;
- warm: the same cache, a new run directory, the fast path;
- old: the same warm cache, a new run directory, ``--worker-per-group`` (a fresh worker per group,
  no builder: how every sweep ran before), so that its medians are the reference for the fast
  path's and only the path differs;
- report: wall time and where it went (measuring = warmup + timed runs, setup = export/compile/
  session, harness = the rest) for each phase, then every case's warm median next to the old
  path's, the ratio, and how many agree within 3%; next to them the cold median (the fast path
  again, in other processes), so that warm/old is judged against the spread of one path between
  processes. Where the rows record ``gpu_busy_pct`` (how busy NVML saw the GPU during the timed
  loop), each case shows it for warm/old and a second count takes only the cases GPU-bound in
  both: a host-bound median follows the launching thread, which moves between processes (a
  hand-written loop 2.3x on the H200: process_spread.py). ``old`` may be a part of the grid
  (e.g. ``--phase old --sizes 512``: the last ``--sizes`` given wins) where device time is
  short; take the part whose cases are GPU-bound: at 224 px every case on the H200 is (nearly)
  host-bound, and its medians move between processes of either path (session 14: warm against
  cold, the same path, 0.70-1.46).
Targets (issue 16): cold <= 300 s, warm <= 120 s, measuring >= 50% of the warm wall time.
Each phase's wall time is the `infersweep run` process's, start to exit, measured here.

A device command is capped at 10 minutes: ``--limit S`` (default 560) interrupts the run at S
seconds as Ctrl-C would (the finished cases stay, the reports are written), and ``--resume``
continues an interrupted phase in the next command (the run directory and the cache are kept;
the phase's wall time is the sum of its commands').
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from infersweep.backends.torch_compile import fx_graph_counts
from infersweep.probes.contention import HOST_BOUND_BUSY
from infersweep.results.store import Store
from infersweep.results.time_split import by_backend

GRID = ["--model", "resnet18", "--backends", "torch,torch-compile,onnxruntime",
        "--devices", "cuda", "--precisions", "fp32,fp16", "--sizes", "224,256,384,512",
        "--batches", "16,32,64"]
AGREE = 0.03
TARGETS = {"cold": 300.0, "warm": 120.0}


def run_phase(root: Path, phase: str, extra: list[str], limit_s: float, resume: bool) -> None:
    cache = root / "cache"
    out = root / phase
    wall_file = root / f"{phase}.wall"
    before = json.loads(wall_file.read_text()) if resume and wall_file.exists() else None
    if before is None:
        if phase == "cold" and cache.exists():
            shutil.rmtree(cache)
        if out.exists():
            shutil.rmtree(out)
    env = {**os.environ, "INFERSWEEP_CACHE": str(cache)}
    flags = ["--worker-per-group"] if phase == "old" else []
    cmd = [sys.executable, "-m", "infersweep", "run", *GRID, "--out", str(out), *flags, *extra]
    start = time.monotonic()
    started_at = time.time()  # epoch, as the rows' info.started_at: the timeline's origin
    with open(root / f"{phase}.log", "a" if before else "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        interrupted = False
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:  # as Ctrl-C: finished cases stay, reports written
            interrupted = True
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - start + (before["wall_s"] if before else 0.0)
    commands = (before["commands"] if before else 0) + 1
    sessions = (before.get("sessions") or []) if before else []
    sessions.append([started_at, time.time()])
    wall_file.write_text(json.dumps({"wall_s": wall, "rc": proc.returncode, "cmd": cmd,
                                     "interrupted": interrupted, "commands": commands,
                                     "sessions": sessions}))
    print(f"{phase}: exit {proc.returncode} in {wall:.1f} s over {commands} command(s)"
          f"{'; interrupted at --limit, resume with --resume' if interrupted else ''}; last lines:")
    print("\n".join((root / f"{phase}.log").read_text().strip().splitlines()[-4:]))


def rows(root: Path, phase: str) -> dict[str, dict]:
    results = json.loads((root / phase / "results.json").read_text())["results"]
    return {r["case_id"]: r for r in results}


def split(root: Path, phase: str) -> dict:
    """Wall time of the phase and where it went, from the rows it wrote."""
    record = json.loads((root / f"{phase}.wall").read_text())
    wall = record["wall_s"]
    measuring = setup = pipelined = probes = 0.0
    ok = 0
    workers = set()
    starts: dict[str, float] = {}  # the workers' starts, summed (info.worker_start_s)
    for r in rows(root, phase).values():
        spent = (r.get("info") or {}).get("spent_s") or {}
        # A row's setup_s is its group's whole setup (model, session) plus its own shape's:
        # summed over rows, the group's part counted once per case. The worker's account
        # (spent_s) charges it to the group's first case only, as the run's own split does.
        setup += spent["setup"] if "setup" in spent else (r.get("setup_s") or 0.0)
        for part, seconds in ((r.get("info") or {}).get("worker_start_s") or {}).items():
            starts[part] = starts.get(part, 0.0) + seconds
        pipelined += spent.get("pipelined", 0.0)
        probes += spent.get("probes", 0.0)
        workers.add((r.get("info") or {}).get("worker_pid"))
        if r["status"] != "ok":
            continue
        ok += 1
        if "measuring" in spent:  # the worker's own account: re-measures and drift included
            measuring += spent["measuring"]
            continue
        timed_ms = (r["iterations"] or 0) * (r["latency_ms_mean"] or 0.0)
        warmup_ms = (r.get("info") or {}).get("warmup_ms") or 0.0
        measuring += (timed_ms + warmup_ms + (r.get("first_iter_ms") or 0.0)) / 1000
    return {"wall": wall, "measuring": measuring, "setup": setup,
            "harness": wall - measuring - setup, "ok": ok, "pipelined": pipelined,
            "probes": probes, "workers": len(workers - {None}), "starts": starts,
            "fx_graphs": fx_graph_counts((r.get("info"), r["batch_size"])
                                         for r in rows(root, phase).values()),
            "interrupted": record.get("interrupted", False), "commands": record.get("commands", 1)}


def compile_setup_by_group(root: Path, phase: str) -> list[tuple[str, list[float]]]:
    """Each torch-compile group's shapes' setup (info.compile_s: compilation, cache hits and the
    first runs), in run order: on the H200 (session 13, warm) a worker's last group took 1.1-1.4 s
    per shape against 1.8-2.3 s in its seven groups before; session 14 did not see that again
    (1.0-1.9 s in no order), and identical processes of shape_setup.py moved 1.06-1.73 s."""
    groups: dict[tuple, dict] = {}
    for r in sorted(rows(root, phase).values(), key=lambda r: (r.get("info") or {}).get(
            "started_at") or 0.0):
        if r["backend"] != "torch-compile" or r["status"] != "ok":
            continue
        compiled = (r.get("info") or {}).get("compile_s") or {}
        groups.setdefault((r["precision"], r["image_size"]), {}).update(compiled)
    return [(f"{precision} {size}px", [compiled[b] for b in sorted(compiled, key=int)])
            for (precision, size), compiled in groups.items()]


def backend_times(root: Path, phase: str) -> list:
    """The phase's cases' time per backend (results/time_split.by_backend), from its store."""
    store_path = root / phase / "results.sqlite"
    if not store_path.exists():
        return []
    store = Store(store_path, readonly=True)
    try:
        return by_backend(store.results())
    finally:
        store.close()


def timeline(root: Path, phase: str) -> dict[str, float] | None:
    """Where the harness time went, from the rows' start times (info.started_at) and walls: the
    gaps between consecutive cases (a new worker's start, between two groups of one worker,
    between two cases of a group), what a case's wall holds besides its measuring, setup,
    pipelined throughput and probes, and the run's start to its first case and its last case to
    its exit (the final reports). Per group: the worker's group start (runner, releasing the
    group before) and the wait for the builder. None for rows without start times."""
    record = json.loads((root / f"{phase}.wall").read_text())
    rows_ = [r for r in rows(root, phase).values()
             if (r.get("info") or {}).get("started_at") is not None and r.get("wall_s")]
    if not rows_ or not record.get("sessions"):
        return None
    rows_.sort(key=lambda r: r["info"]["started_at"])
    out = dict.fromkeys(("run start to first case", "worker switches", "between groups",
                         "between cases", "inside cases, untracked", "last case to exit",
                         "group start: runner", "group start: release before",
                         "builder wait"), 0.0)
    sessions = record["sessions"]
    for start, end in sessions:
        mine = [r for r in rows_ if start <= r["info"]["started_at"] <= end]
        if mine:
            out["run start to first case"] += mine[0]["info"]["started_at"] - start
            out["last case to exit"] += end - (mine[-1]["info"]["started_at"] + mine[-1]["wall_s"])
        for prev, r in zip(mine, mine[1:]):
            gap = r["info"]["started_at"] - (prev["info"]["started_at"] + prev["wall_s"])
            same_worker = r["info"].get("worker_pid") == prev["info"].get("worker_pid")
            same_group = same_worker and all(r[k] == prev[k] for k in (
                "backend", "precision", "image_size"))
            out["between cases" if same_group else "between groups" if same_worker
                else "worker switches"] += gap
    waited = {}
    for r in rows_:
        info = r["info"]
        spent = info.get("spent_s") or {}
        accounted = sum(spent.get(k, 0.0) for k in ("measuring", "setup", "pipelined", "probes",
                                                    "data", "output"))
        if "setup" not in spent:
            accounted += r.get("setup_s") or 0.0
        out["inside cases, untracked"] += r["wall_s"] - accounted
        for step in ("data", "output"):  # the batch made and placed; the last output fetched
            if step in spent:
                out[f"inside cases: {step}"] = out.get(f"inside cases: {step}", 0.0) + spent[step]
        # Each probe hook's seconds (begin, before and end are harness no other figure holds;
        # noise and after_warmup are inside measuring, after inside probes).
        for hook, seconds in (info.get("probe_s") or {}).items():
            out[f"  probe {hook}"] = out.get(f"  probe {hook}", 0.0) + seconds
        group = info.get("group_start_s") or {}
        out["group start: runner"] += group.get("runner", 0.0)
        out["group start: release before"] += group.get("release_previous", 0.0)
        for step, seconds in (group.get("release_steps") or {}).items():
            out[f"  of which {step}"] = out.get(f"  of which {step}", 0.0) + seconds
        if "builder_wait_s" in info:
            waited[(r["backend"], r["precision"], r["image_size"])] = info["builder_wait_s"]
    out["builder wait"] = sum(waited.values())
    return out


def parent_phases(root: Path, phase: str) -> dict | None:
    """When the run's parent reached each step before its first case (store meta
    "parent_phases"), or None for a run that did not record them."""
    db = root / phase / "results.sqlite"
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'parent_phases'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return json.loads(row[0]) if row else None


def host_bound(r: dict) -> bool | None:
    """Whether the row's GPU waited for the host much of its timed loop (its median follows the
    launching thread, which moves between processes); None for a tree that did not record it."""
    busy = r.get("gpu_busy_pct")
    return None if busy is None else busy < HOST_BOUND_BUSY


def label(r: dict) -> str:
    return (f"{r['backend']:<13} {r['precision']} {r['image_size']:>3}px bs{r['batch_size']:<3}")


def report(root: Path) -> int:
    print(f"grid: {' '.join(GRID)}")
    for phase in ("cold", "warm", "old"):
        if not (root / f"{phase}.wall").exists():
            print(f"{phase}: not run")
            continue
        s = split(root, phase)
        target = TARGETS.get(phase)
        verdict = "" if target is None or s["interrupted"] else (
            f"  target <= {target:.0f} s: {'MET' if s['wall'] <= target else 'MISSED'}")
        print(f"{phase:>5}: {s['ok']} ok, wall {s['wall']:6.1f} s = measuring "
              f"{s['measuring']:6.1f} s ({100 * s['measuring'] / s['wall']:4.1f}%), setup "
              f"{s['setup']:6.1f} s ({100 * s['setup'] / s['wall']:4.1f}%), harness "
              f"{s['harness']:6.1f} s ({100 * s['harness'] / s['wall']:4.1f}%){verdict}")
        if s["interrupted"]:
            print(f"       INTERRUPTED at --limit after {s['commands']} command(s): "
                  f"{s['ok']} of 72 cases ok; resume with --resume")
        print(f"       harness includes: {s['workers']} worker processes, pipelined throughput "
              f"{s['pipelined']:.1f} s, probes after the timed loop {s['probes']:.1f} s")
        if s["starts"]:  # rows of a tree that records them
            t = s["starts"]
            ahead = (f"; {t['started_ahead']:.1f} s of starts ran ahead, beside the worker "
                     "before" if t.get("started_ahead") else "")
            print(f"       worker starts: spawn (or hand-over) to first case "
                  f"{t.get('to_first_case', 0):.1f} s (interpreter and imports "
                  f"{t.get('imports', 0):.1f} s, runtime {t.get('runtime', 0):.1f} s, first "
                  f"runner {t.get('runner', 0):.1f} s), closing the worker before "
                  f"{t.get('close_previous', 0):.1f} s{ahead}")
        if s["fx_graphs"]:  # rows of a tree that records them
            compiled_again = phase == "warm" and s["fx_graphs"].get("miss")
            print("       torch-compile FX-graph cache: " + ", ".join(
                f"{n} {state}" for state, n in sorted(s["fx_graphs"].items()))
                + ("  <- the warm run compiled again" if compiled_again else ""))
        parts = backend_times(root, phase)
        if parts:
            print("       by backend (the cases' own wall): " + "; ".join(
                f"{p.backend} {p.wall_s:.1f} s (measuring {p.measuring_s:.1f}, of which first "
                f"runs {p.first_runs_s:.1f}; setup {p.setup_s:.1f})" for p in parts))
        compiled = compile_setup_by_group(root, phase)
        if compiled:
            print("       torch-compile setup per shape, by group in run order: " + "; ".join(
                f"{group} {'/'.join(f'{t:.2f}' for t in times)}" for group, times in compiled))
        phases = parent_phases(root, phase)
        if phases:
            print("       the parent, from its start: " + ", ".join(
                f"{step} at {seconds:.1f} s" for step, seconds in phases.items()))
        gaps = timeline(root, phase)
        if gaps:
            print("       harness, from the cases' start times: " + ", ".join(
                f"{name} {seconds:.1f} s" for name, seconds in gaps.items()))
    if not all((root / p / "results.json").exists() for p in ("warm", "old")):
        return 1
    warm, old = rows(root, "warm"), rows(root, "old")
    cold = rows(root, "cold") if (root / "cold" / "results.json").exists() else {}
    compared, noise, gpu_bound = [], [], []
    # cold is the fast path too, in other processes: warm/cold is the process-to-process spread
    # of one path, against which warm/old (the path changed) is judged.
    print(f"\n{'case':<32} {'warm ms':>9} {'old ms':>9} {'warm/old':>9} {'cold ms':>9} "
          f"{'warm/cold':>9} {'GPU busy':>8}")
    for case_id, w in sorted(warm.items(), key=lambda kv: label(kv[1])):
        o, c = old.get(case_id), cold.get(case_id)
        if w["status"] != "ok" or not o or o["status"] != "ok":
            continue
        ratio = w["latency_ms_median"] / o["latency_ms_median"]
        compared.append(ratio)
        same = f"{'':9} {'':9}"
        if c and c["status"] == "ok":
            noise.append(w["latency_ms_median"] / c["latency_ms_median"])
            same = f"{c['latency_ms_median']:9.3f} {noise[-1]:9.3f}"
        bound = [host_bound(w), host_bound(o)]
        if bound == [False, False]:
            gpu_bound.append(ratio)
        busy = "/".join("-" if r.get("gpu_busy_pct") is None else f"{r['gpu_busy_pct']:.0f}"
                        for r in (w, o))
        flag = "" if abs(ratio - 1) <= AGREE else "  <- warm/old beyond 3%"
        flag += "  (host-bound)" if True in bound else ""
        print(f"{label(w):<32} {w['latency_ms_median']:9.3f} {o['latency_ms_median']:9.3f} "
              f"{ratio:9.3f} {same} {busy:>8}{flag}")
    skipped = sum(1 for k, w in warm.items() if k not in old)
    if not compared:
        return 1
    print(f"\n{_agreement('warm/old (fast path vs old path)', compared)}")
    if gpu_bound:  # the GPU busy >= HOST_BOUND_BUSY % in both: medians that follow the GPU
        print(_agreement(f"warm/old, GPU-bound in both (GPU busy >= {HOST_BOUND_BUSY}%)",
                         gpu_bound))
    if noise:
        print(f"{_agreement('warm/cold (fast path in two processes)', noise)}")
    if skipped:
        print(f"{skipped} warm cases not run on the old path")
    return 0


def _agreement(what: str, ratios: list[float]) -> str:
    within = sum(abs(r - 1) <= AGREE for r in ratios)
    return (f"{what}: {within} of {len(ratios)} cases within 3%; median ratio "
            f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--phase", choices=("cold", "warm", "old", "report"), required=True)
    parser.add_argument("--limit", type=float, default=560.0,
                        help="interrupt the run after this many seconds (as Ctrl-C)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted phase: keep its run directory and cache")
    args, extra = parser.parse_known_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if args.phase == "report":
        return report(args.root)
    run_phase(args.root, args.phase, extra, args.limit, args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
