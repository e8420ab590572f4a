"""A worker ends as Python would, less the teardown of its modules (run/quick_exit.py): what its
exit must still do is done, its threads joined and its exit handlers run (torch.compile's late
cache writes and Inductor's compile pool live there). A real sweep, a real worker process, marks
left by the test backend (fault-exit-work)."""

import json
import os

from conftest import FAST, cli


def test_a_worker_joins_its_threads_and_runs_its_exit_handlers_before_it_ends(tmp_path):
    marks, out = tmp_path / "marks", tmp_path / "run"
    marks.mkdir()
    done = cli("run", "--backends", "fault-exit-work", "--devices", "cpu", "--sizes", "8",
               "--batches", "1", "--out", out, *FAST,
               env={**os.environ, "INFERSWEEP_FAULT_EXIT_MARK": str(marks)})
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [r["status"] for r in rows] == ["ok"]
    pid = rows[0]["info"]["worker_pid"]
    # the run waits for its workers' exit before it returns
    assert (marks / f"{pid}.thread").read_text() == "joined"
    assert (marks / f"{pid}.atexit").read_text() == "ran"
