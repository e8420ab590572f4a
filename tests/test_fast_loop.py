"""The fast hypothesis loop: the stopping rule, quick mode, the cache across runs, estimates."""

import json
import os
import random
import time
from pathlib import Path

import torch
import torchvision
from conftest import FAST, cli

from infersweep.artefacts.cache import ArtifactCache, entries
from infersweep.artefacts.export import onnx_export
from infersweep.measure.timing import MeasureSettings, measure
from infersweep.artefacts.models import ModelSource
from infersweep.measure.stats import summarize


def _sleep_reference_ms(seconds: float, n: int = 20) -> float:
    """Median wall time of a bare sleep on this machine, now: what the loop should report."""
    runs = []
    for _ in range(n):
        start = time.perf_counter()
        time.sleep(seconds)
        runs.append((time.perf_counter() - start) * 1000)
    return sorted(runs)[n // 2]


def test_stable_stream_stops_at_min_time_with_target_reached():
    settings = MeasureSettings(min_iterations=10, min_time_s=0.2, max_time_s=3.0, target_ci=0.02,
                               warmup_max_s=1.0)
    reference = _sleep_reference_ms(0.002)
    timing = measure(lambda: time.sleep(0.002), settings)
    assert timing.warnings == []
    s = summarize(timing.samples_ms)
    assert s.ci_halfwidth_rel <= 0.02
    timed_s = sum(timing.samples_ms) / 1000
    # stopped long before the cap (the samples exclude the loop's own time: no lower bound here;
    # min_time is checked exactly on a fake clock in test_timing_loop)
    assert len(timing.samples_ms) >= settings.min_iterations
    assert timed_s < settings.max_time_s / 2
    assert 0.5 < s.median / reference < 2  # the loop times what a bare loop times


def test_noisy_stream_hits_the_cap_and_says_so():
    rng = random.Random(7)
    settings = MeasureSettings(min_iterations=5, min_time_s=0.1, max_time_s=0.4, target_ci=0.001,
                               warmup_max_s=0.2)
    timing = measure(lambda: time.sleep(rng.choice([0.001, 0.004, 0.008])), settings)
    assert timing.warnings == ["hit the 0.4 s cap before the median's CI reached +-0.1%"]
    # The timed phase ends with the first run past the cap: at most one run more than the cap
    # (the samples leave out the loop's own time, so they may sum to a little less).
    timed_s = sum(timing.samples_ms) / 1000
    assert timed_s < settings.max_time_s + 2 * max(timing.samples_ms) / 1000


def test_warmup_waits_for_a_slow_start_to_settle():
    calls = []

    def run():  # the first runs are slow, like lazy initialisation
        calls.append(1)
        time.sleep(0.02 if len(calls) < 5 else 0.002)

    settings = MeasureSettings(min_iterations=5, min_time_s=0.05, max_time_s=1.0, target_ci=0.05)
    timing = measure(run, settings)
    # Windows of 3: slow,slow,slow | slow,fast,fast differ; later windows settle it. A loaded
    # machine can stretch a fast run past 5%: the exact count is in test_timing_loop (fake clock).
    assert timing.warmup_iterations >= 9
    # the timed runs are the fast ones: a tenth of the slow cold run, give or take load
    assert summarize(timing.samples_ms).median < timing.first_iter_ms / 3


def _export_count():
    return sum(e["kind"] == "onnx" for e in entries())


def test_second_run_in_new_directory_skips_exports(tmp_path):
    args = ["--backends", "onnxruntime", "--sizes", "40", "--batches", "1", *FAST]
    first = cli("run", *args, "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    exports = _export_count()
    second = cli("run", *args, "--out", tmp_path / "b")
    assert second.returncode == 0, second.stderr
    assert _export_count() == exports
    log_b = "".join(p.read_text() for p in (tmp_path / "b" / "logs").glob("*.log"))
    assert "[torch.onnx]" not in log_b  # the exporter never ran in the second sweep


def test_changed_weights_invalidate_the_export(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    cache = ArtifactCache(tmp_path / "cache")
    path1, cached1 = onnx_export(ModelSource("resnet18", str(tmp_path / "w.pth")), 32, 18, cache)
    path2, cached2 = onnx_export(ModelSource("resnet18", str(tmp_path / "w.pth")), 32, 18, cache)
    assert not cached1 and cached2 and path1 == path2
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    path3, cached3 = onnx_export(ModelSource("resnet18", str(tmp_path / "w.pth")), 32, 18, cache)
    assert not cached3 and path3 != path1


def test_quick_results_are_marked_and_do_not_satisfy_a_full_run(tmp_path):
    out = tmp_path / "run"
    args = ["--backends", "fault-ok", "--sizes", "8", "--batches", "1,2", "--out", out]
    quick = cli("run", *args, "--quick")
    assert quick.returncode == 0, quick.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    assert all("quick mode" in r["warnings"] for r in rows)
    assert all(r["info"]["settings"]["target_ci"] == 0.05 for r in rows)
    again_quick = cli("plan", *args, "--quick")
    assert "2 cases, 0 to run" in again_quick.stdout
    full = cli("plan", *args)
    assert "2 cases, 2 to run" in full.stdout
    assert "estimated time" in quick_estimate(args)


def quick_estimate(args):
    return cli("plan", *args[:-2], "--out", "/nonexistent-dir-for-plan", "--quick").stdout


def test_cache_list_and_clear(tmp_path):
    env = {**os.environ, "INFERSWEEP_CACHE": str(tmp_path / "cache")}
    cache = ArtifactCache(tmp_path / "cache")
    cache.get_or_build("onnx", {"k": 1}, lambda d: (d / "model.onnx").write_bytes(b"x" * 1000))
    listed = cli("cache", "list", env=env)
    assert listed.returncode == 0 and "1 entries" in listed.stdout
    cleared = cli("cache", "clear", "--kind", "onnx", env=env)
    assert cleared.returncode == 0 and not (Path(tmp_path / "cache" / "onnx")).exists()
