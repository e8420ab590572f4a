"""Power from a stepped energy counter's edges (probes/counter_edges.py): exact arithmetic on
known edges, and a real thread polling a counter that moves on the real clock."""

import time

import pytest

from infersweep.probes.counter_edges import (Edge, EdgeRecorder, power_from_edges,
                                             power_from_ends, step_s)


def test_two_edges_give_the_energy_between_them_over_the_time_between_them():
    edges = [Edge(1.0, 5_000), Edge(1.1, 5_070), Edge(1.3, 5_210)]
    power = power_from_edges(edges, lambda a, b: (b - a) / 1000, window_s=0.4)
    assert (power.watts, power.joules, power.edges) == (pytest.approx(0.7), 0.21, 3)
    assert power.seconds == pytest.approx(0.3)


def test_fewer_than_two_edges_give_no_figure_and_the_reason():
    power = power_from_edges([Edge(1.0, 5)], lambda a, b: b - a, window_s=0.08)
    assert power.watts is None and power.edges == 1
    assert power.reason == ("the counter moved 1 time(s) in the 0.08 s window (it must move "
                            "twice for a figure: a longer --min-time gives one)")


def test_a_thread_polls_a_counter_that_moves_every_20_ms():
    """The counter holds 20 J per 20 ms refresh (1000 W) of the real monotonic clock; a reading
    taken only at the window's ends could be off by a step (5% of 0.4 s), the edges are not."""
    def read():
        return int(time.monotonic() / 0.02) * 20

    recorder = EdgeRecorder(read)
    recorder.start()
    time.sleep(0.4)
    edges = recorder.stop()
    assert len(edges) >= 10
    assert edges == sorted(edges, key=lambda e: e.t)
    power = power_from_edges(edges, lambda a, b: b - a, window_s=0.4)
    assert power.watts == pytest.approx(1000, rel=0.15)
    assert recorder.stop() is edges  # stopping twice changes nothing


def test_edges_too_close_for_the_recorder_s_resolution_give_no_figure():
    """Seen within 14 ms (the H200: a 10 ms poll and a 4 ms read), edges 0.1 s apart could be
    off by 14%: no figure; 0.2 s apart, 7%: a figure."""
    close = [Edge(1.0, 0), Edge(1.1, 70_000)]
    power = power_from_edges(close, lambda a, b: (b - a) / 1000, 0.15, resolution_s=0.014)
    assert power.watts is None and power.joules == 70.0
    assert power.reason == ("the counter's moves in the 0.15 s window span 0.100 s, seen to "
                            "within 14 ms: more than 10% of it (a longer --min-time gives a "
                            "figure)")
    wider = close + [Edge(1.2, 140_000)]
    assert power_from_edges(wider, lambda a, b: (b - a) / 1000, 0.25,
                            resolution_s=0.014).watts == pytest.approx(700)


def test_the_resolution_is_the_poll_interval_and_the_mean_read():
    def slow_read():
        time.sleep(0.004)
        return 1

    recorder = EdgeRecorder(slow_read, interval_s=0.01)
    recorder.reset()
    for _ in range(5):
        recorder.poll_once()
    assert 0.014 <= recorder.resolution_s < 0.03


def test_a_counter_s_step_is_the_median_gap_between_its_moves():
    assert step_s([Edge(0.0, 1)]) is None
    assert step_s([Edge(0.0, 1), Edge(0.1, 2), Edge(0.2, 3), Edge(0.45, 4)]) == pytest.approx(0.1)


def test_a_fine_counter_read_at_its_ends():
    joules = lambda a, b: (b - a) / 1e6  # noqa: E731 (RAPL: microjoules)
    power = power_from_ends(Edge(1.0, 0), Edge(1.5, 25_000_000), joules, step=0.001)
    assert (power.watts, power.joules, power.seconds) == (50.0, 25.0, 0.5)
    still = power_from_ends(Edge(1.0, 7), Edge(1.5, 7), joules, step=0.001)
    assert still.watts is None and still.reason == "the counter did not move in the 0.50 s window"
