"""--remeasure: how many times a case the contention guard flagged is timed again."""

import subprocess
import sys

import pytest

from infersweep.grid.spec import SpecError, build_spec

BASE = ["--backends", "torch", "--devices", "cpu", "--sizes", "32", "--batches", "1",
        "--min-time", "0.01", "--max-time", "0.05", "--min-iterations", "2"]


@pytest.mark.parametrize("value, settings", [(None, 1), (0, 0), (3, 3), ("2", 2)])
def test_remeasure_reaches_the_measurement_settings(value, settings):
    raw = {"backends": ["torch"]} | ({} if value is None else {"remeasure": value})
    assert build_spec(raw).measure.remeasure == settings


@pytest.mark.parametrize("value, message", [
    (-1, "remeasure: -1 must be >= 0"),
    (1.5, "remeasure: 1.5 is not an integer"),
    (11, "remeasure: 11 is too many (at most 10)"),
    (True, "remeasure: True is not an integer"),
])
def test_a_bad_remeasure_is_refused_by_name(value, message):
    with pytest.raises(SpecError) as refused:
        build_spec({"backends": ["torch"], "remeasure": value})
    assert str(refused.value) == message


def test_a_bad_remeasure_flag_is_one_line_exit_2_and_creates_nothing(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "infersweep", "run", *BASE, "--remeasure", "-1",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: remeasure: -1 must be >= 0"]
    assert not out.exists()
