"""Power from a stepped energy counter's edges (probes/counter_edges.py): exact arithmetic on
known edges, and a real thread polling a counter that moves on the real clock."""

import time

import pytest

from infersweep.probes.counter_edges import Edge, EdgeRecorder, power_from_edges


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
