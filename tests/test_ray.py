"""--executor ray on a real local Ray instance: the same results as the local executor, a Ray
worker killed mid-case, a lost node, retries, Ctrl-C and resume, and the missing-Ray error.

Each sweep starts its own local Ray instance (a few seconds), as the CLI does."""

import csv
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, cli, interruptible_cli, stored
from fault_backend import FAULT_BATCH

ray = pytest.importorskip("ray")


pytestmark = pytest.mark.slow


def _csv(out: Path) -> tuple[list[str], list[dict]]:
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _json_rows(out: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in json.loads((out / "results.json").read_text())["results"]}


def _statuses(out: Path) -> dict[str, str]:
    return stored(out, "status")


def _finished_at(out: Path) -> dict[str, str]:
    return stored(out, "finished_at", "WHERE status='ok'")


def _wait_for_ok(out: Path, n: int, proc: subprocess.Popen, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(s == "ok" for s in _statuses(out).values()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} ok cases; {proc.poll()=}")


def _ray_workers_serving_infersweep() -> list[tuple[int, int]]:
    """(worker pid, its parent's pid) of infersweep workers whose parent is a Ray task process."""
    ps = subprocess.run(["pgrep", "-af", "infersweep.run.worker"], capture_output=True, text=True)
    found = []
    for line in ps.stdout.splitlines():
        parts = line.split()
        if "--parent" not in parts:
            continue
        parent = int(parts[parts.index("--parent") + 1])
        try:
            title = Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ray::" in title:
            found.append((int(parts[0]), parent))
    return found


def test_cpu_sweep_matches_the_local_executor(tmp_path):
    """Same cases, statuses, columns and JSON fields; each row says where it ran; a crashed case
    is re-scheduled by --retries, a failed one is not."""
    args = ["--backends", "fault-ok,fault-raise,fault-segfault", "--sizes", "8",
            "--batches", f"1,{FAULT_BATCH},3", "--timeout", "20", *FAST]
    local = cli("run", *args, "--out", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    on_ray = cli("run", *args, "--executor", "ray", "--retries", "1", "--out", tmp_path / "ray")
    assert on_ray.returncode == 0, on_ray.stderr + on_ray.stdout

    local_cols, local_rows = _csv(tmp_path / "local")
    ray_cols, ray_rows = _csv(tmp_path / "ray")
    assert ray_cols == local_cols
    assert {r["case_id"]: r["status"] for r in ray_rows} == \
        {r["case_id"]: r["status"] for r in local_rows}
    assert sorted(r["status"] for r in ray_rows).count("ok") == 7
    local_json, ray_json = _json_rows(tmp_path / "local"), _json_rows(tmp_path / "ray")
    for cid, row in ray_json.items():
        assert set(row) == set(local_json[cid])
        assert row["info"]["executor"] == "ray"
        assert row["info"]["host"] == socket.gethostname()
        assert row["info"]["node_id"]
        if row["status"] == "ok":
            assert row["samples_ms"] and row["wall_s"] > 0 and row["latency_ms_median"] > 0

    by_backend = {(r["backend"], int(r["batch_size"])): r for r in ray_json.values()}
    segfault = by_backend[("fault-segfault", FAULT_BATCH)]
    assert segfault["status"] == "crashed" and "SIGSEGV" in segfault["reason"]
    assert "crashed 2 times; --retries 1" in segfault["reason"]
    assert len(segfault["info"]["earlier_attempts"]) == 1
    raised = by_backend[("fault-raise", FAULT_BATCH)]
    assert raised["status"] == "failed" and "earlier_attempts" not in raised["info"]

    report = (tmp_path / "ray" / "report.md").read_text()
    assert "## Hardware" not in report  # one machine: nothing to group
    assert (tmp_path / "ray" / "report.html").is_file()
    assert any((tmp_path / "ray" / "logs").glob("worker-*.log"))
    db = sqlite3.connect(tmp_path / "ray" / "results.sqlite")
    nodes = json.loads(db.execute("SELECT value FROM meta WHERE key='nodes'").fetchone()[0])
    assert socket.gethostname() in nodes
    assert _ray_workers_serving_infersweep() == []


def test_killed_ray_worker_charges_the_case_in_flight(tmp_path):
    """SIGKILL of the Ray worker process running a group, in the middle of a case: that case is
    `crashed` with Ray's reason, the rest of the group runs in a new task, the sweep completes."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "infersweep", "run", "--executor", "ray", "--backends",
         "fault-hang", "--sizes", "8", "--batches", f"1,{FAULT_BATCH},3", "--timeout", "60",
         *FAST, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_ok(out, 1, proc)  # batch 1 is stored: the worker is now hanging in batch 2
        time.sleep(2)
        serving = _ray_workers_serving_infersweep()
        assert len(serving) == 1, serving
        os.kill(serving[0][1], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr + stdout
    rows = {int(r["batch_size"]): r for r in _csv(out)[1]}
    assert rows[1]["status"] == "ok" and rows[3]["status"] == "ok"
    lost = rows[FAULT_BATCH]
    assert lost["status"] == "crashed", lost
    assert "Ray task running this case was lost" in lost["reason"]
    assert socket.gethostname() in lost["reason"]
    assert _ray_workers_serving_infersweep() == []  # the hung worker died with its Ray worker


def test_ctrl_c_then_resume_skips_finished_cases(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--executor", "ray", "--backends", "fault-ok", "--sizes", "8", "--batches",
            "1,3,4,5,6,7,8,9", "--min-time", "0.4", "--max-time", "0.4", "--min-iterations", "5",
            "--timeout", "30", "--out", str(out)]
    proc = interruptible_cli(*args)
    _wait_for_ok(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)  # a hang fails here; "prompt" is checked below:
    assert proc.returncode == 130 and "resume" in stdout
    assert _ray_workers_serving_infersweep() == []
    before = _finished_at(out)
    assert 2 <= len(before) < 8  # it stopped, it did not finish the sweep first

    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already done" in again.stdout
    after = _finished_at(out)
    assert len(after) == 8
    assert {cid: after[cid] for cid in before} == before  # finished cases were not run again


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()


def test_node_lost_mid_case(tmp_path, two_node_cluster):
    """A two-node cluster; the node running the hanging case is removed: that case is
    `crashed` with the reason, everything else completes on the other node."""
    cluster, nodes = two_node_cluster
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "infersweep", "run", "--executor", "ray", "--ray-address",
         cluster.address, "--backends", "fault-ok,fault-hang", "--sizes", "8", "--batches",
         f"1,{FAULT_BATCH},3", "--timeout", "60", *FAST, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        hanging = None
        while hanging is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                rows = _json_rows(out).values()
            except (OSError, ValueError):
                rows = []
            serving = _ray_workers_serving_infersweep()
            # The hang group is in batch 2 once its batch 1 is stored and the other group is
            # done: then the only infersweep worker left is the hanging one.
            stored = {(r["backend"], r["batch_size"]): r["status"] for r in rows}
            others_done = all(stored.get(("fault-ok", b)) == "ok" for b in (1, FAULT_BATCH, 3))
            if stored.get(("fault-hang", 1)) == "ok" and others_done and len(serving) == 1:
                time.sleep(2)
                hanging = serving
            time.sleep(0.1)
        assert hanging, "the hang case never started"
        ray_pid = hanging[0][1]
        raylet_of = {n.all_processes["raylet"][0].process.pid: n for n in nodes}
        parent = int(Path(f"/proc/{ray_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        cluster.remove_node(raylet_of[parent])
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr + stdout
    rows = {(r["backend"], int(r["batch_size"])): r for r in _csv(out)[1]}
    lost = rows[("fault-hang", FAULT_BATCH)]
    assert lost["status"] == "crashed", lost
    assert "lost" in lost["reason"]
    others = [r for key, r in rows.items() if key != ("fault-hang", FAULT_BATCH)]
    assert all(r["status"] == "ok" for r in others), others


def test_without_ray_exit_2_with_the_install_command(tmp_path):
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ["PYTHONPATH"]])}
    proc = cli("run", "--executor", "ray", "--backends", "fault-ok", "--sizes", "8", "--batches",
               "1", "--out", tmp_path / "run", *FAST, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'infersweep[ray]'" in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--retries", "1"], "--retries needs --executor ray"),
    (["--ray-address", "localhost:6379"], "--ray-address needs --executor ray"),
    (["--executor", "ray", "--gpus", "0"], "--gpus is for the local executor"),
    (["--executor", "dask"], "unknown executor 'dask'"),
    (["--executor", "ray", "--retries", "-1"], "retries"),
])
def test_bad_executor_flags_exit_2(tmp_path, flags, message):
    proc = cli("run", "--backends", "fault-ok", "--sizes", "8", "--batches", "1",
               "--out", tmp_path / "run", *flags)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
