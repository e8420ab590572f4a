"""How `run` ends, through the real CLI: its exit code says whether the sweep produced anything,
cases that cannot run are planned as such, and an interrupted run says what it left behind."""

import os
import signal
import time

from conftest import FAST, cli, interruptible_cli, stored
from fault_backend import FAULT_BATCH


def test_fixed_size_model_is_planned_unsupported_and_the_run_exits_1(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--model", "vit_b_16", "--sizes", "256", "--backends", "torch,onnxruntime",
               "--batches", "1", "--out", out, *FAST)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reason = ("vit_b_16 does not take 256 px inputs (Wrong image height! Expected 224 but got "
              "256!)")
    statuses = stored(out, "status")
    assert sorted(statuses.values()) == ["unsupported", "unsupported"], statuses
    assert all(reason in r for r in stored(out, "result").values())
    assert proc.stderr.strip() == (f"no case of this sweep succeeded (2 unsupported): the reasons "
                                   f"are in {out}/report.md")
    plan = cli("plan", "--model", "vit_b_16", "--sizes", "224,256", "--backends", "torch",
               "--batches", "1", "--out", tmp_path / "plan")
    assert plan.returncode == 0, plan.stderr
    assert "2 cases, 1 to run" in plan.stdout
    assert not (tmp_path / "plan").exists()


def test_a_sweep_whose_cases_all_failed_exits_1_and_one_ok_case_makes_it_0(tmp_path):
    args = ["--backends", "fault-raise", "--sizes", "8", *FAST, "--timeout", "30"]
    failed = cli("run", *args, "--batches", str(FAULT_BATCH), "--out", tmp_path / "bad")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "no case of this sweep succeeded (1 failed)" in failed.stderr
    assert list(stored(tmp_path / "bad", "status").values()) == ["failed"]
    mixed = cli("run", *args, "--batches", f"1,{FAULT_BATCH}", "--out", tmp_path / "mixed")
    assert mixed.returncode == 0, mixed.stdout + mixed.stderr
    assert sorted(stored(tmp_path / "mixed", "status").values()) == ["failed", "ok"]


def _start(*args, env=None):
    return interruptible_cli("run", *args, env=env)


def _wait(condition, proc, what, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"never saw {what}; rc={proc.poll()} {proc.communicate()}")


def test_ctrl_c_before_the_first_case_ends_says_so(tmp_path):
    out = tmp_path / "run"
    proc = _start("--backends", "fault-ok", "--sizes", "8", "--batches", "1", "--min-time", "20",
                  "--max-time", "20", "--out", out)
    # The first case is in flight once its worker has the group (a worker exists earlier: it
    # starts while the parent describes the machine)
    _wait(lambda: any("group of" in log.read_text() for log in out.glob("logs/worker-*.log")),
          proc, "a worker serving its group")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted: no case had finished; run the same command again to resume" in stdout
    assert stored(out, "status") == {}


def test_ctrl_c_while_reports_are_written_says_how_to_rebuild_them(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, INFERSWEEP_PLUGINS="slow_format")
    proc = _start("--backends", "fault-ok", "--sizes", "8", "--batches", "1", *FAST,
                  "--out", out, env=env)
    _wait(lambda: (out / "slow-format-started").exists(), proc, "the reports being written")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout + stderr
    assert (f"interrupted while writing the reports: report.html and plots/ in {out} may be "
            "missing or out of date. Every finished case is in results.sqlite: rebuild the "
            f"reports with `infersweep report {out}`") in " ".join(stdout.split())
    assert list(stored(out, "status").values()) == ["ok"]
    assert not (out / "slow.txt").exists()
    rebuilt = cli("report", out, env=dict(env, INFERSWEEP_SLOW_FORMAT_S="0"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out / "slow.txt").read_text() == "1 rows\n"
