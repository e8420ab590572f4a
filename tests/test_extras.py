"""Every optional extra that is missing says so, with the exact line that installs it.

The extras are really installed here, so they are hidden from the CLI and its workers with
tests/hide_modules/sitecustomize.py (ImportError and find_spec None, as for an absent package).
"""

import csv
import os

import pytest

from conftest import FAST, TESTS, cli


def _hiding(*modules) -> dict:
    path = os.pathsep.join([str(TESTS / "hide_modules"), os.environ["PYTHONPATH"]])
    return {**os.environ, "PYTHONPATH": path, "INFERSWEEP_TEST_HIDE": ",".join(modules)}


def _env_cell(stdout: str, label: str) -> str:
    """The value of one row of `infersweep env`'s table, its wrapped lines joined."""
    cells, current = {}, None
    for line in stdout.splitlines():
        parts = [p.strip() for p in line.strip("│|").split("│")]
        if len(parts) != 2:
            continue
        if parts[0]:
            current = parts[0]
            cells[current] = parts[1]
        elif current:
            cells[current] += " " + parts[1]
    return cells[label]


@pytest.mark.parametrize("extra,module", [("openvino", "openvino"), ("gpu", "pynvml"),
                                          ("timm", "timm"), ("ray", "ray"),
                                          ("samples", "skimage")])
def test_env_names_each_missing_extra_with_its_install_line(extra, module):
    done = cli("env", env={**_hiding(module), "COLUMNS": "400"})
    assert done.returncode == 0, done.stderr
    extras = _env_cell(done.stdout, "Extras")
    assert f"{extra}: missing (pip install 'infersweep[{extra}]')" in extras, extras
    others = [e for e in ("openvino", "gpu", "timm", "ray", "samples") if e != extra]
    present = cli("env", env={**os.environ, "COLUMNS": "400"}).stdout
    for other in others:  # only the hidden one changes
        assert (f"{other}: missing" in extras) == (f"{other}: missing" in _env_cell(present,
                                                                                    "Extras"))


def test_openvino_cases_are_unavailable_with_the_install_line(tmp_path):
    hidden = _hiding("openvino")
    done = cli("run", "--backends", "openvino", "--sizes", "32", "--batches", "1",
               "--out", tmp_path / "run", *FAST, env=hidden)
    assert done.returncode == 1, done.stderr  # nothing could be measured
    with open(tmp_path / "run" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("unavailable", "python package openvino is not installed; install with: "
                        "pip install 'infersweep[openvino]'")]
    # What the terminal shows too: rich must not read "[openvino]" as a style tag and drop it.
    assert "pip install 'infersweep[openvino]'" in done.stdout, done.stdout
    plan = cli("plan", "--backends", "openvino", "--sizes", "32", "--batches", "1",
               "--out", tmp_path / "run", *FAST, env={**hidden, "COLUMNS": "400"})
    assert "pip install 'infersweep[openvino]'" in plan.stdout, plan.stdout
    env = cli("env", env={**hidden, "COLUMNS": "400"})
    assert _env_cell(env.stdout, "backend openvino") == (
        "not available (python package openvino is not installed; install with: "
        "pip install 'infersweep[openvino]')")


def test_ray_executor_without_ray_is_refused_with_the_install_line(tmp_path):
    done = cli("run", "--executor", "ray", "--backends", "torch", "--out", tmp_path / "run",
               env=_hiding("ray"))
    assert done.returncode == 2
    assert "pip install 'infersweep[ray]'" in done.stderr
    assert not (tmp_path / "run").exists()
