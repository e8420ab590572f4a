"""The scenario keys of a sweep (--scenarios, --qps, --max-batch, ...): validated here, expanded
into cases by ``Spec.scenario_points``. See measure/server.py for what a server case measures."""

from __future__ import annotations

from infersweep.case import SCENARIOS
from infersweep.grid.values import MAX_BATCH_SIZE, SpecError, choices as _choices
from infersweep.grid.values import items as _items, number as _number
from infersweep.grid.values import positive_ints as _positive_ints

SCENARIO_KEYS = {
    "scenarios": "fixed (default: fixed-batch latency), single-stream, offline, server",
    "qps": "server: target request rates (Poisson arrivals), one server case per rate",
    "max_batch": "server: largest batch the batcher forms (default: 8)",
    "max_delay_ms": "server: longest a request waits for its batch to fill (default: 2)",
    "find_max_qps": "server: search the highest rate whose p99 stays under p99_ms",
    "pad_batches": "server: run every batch the batcher forms at max_batch (padded): one shape",
    "p99_ms": "server: the p99 request-latency bound",
    "server_min_duration": "server: seconds of arrivals per run at least (default: 10)",
    "server_min_requests": "server: requests per run at least (default: 100)",
    "qps_resolution": "server: the max-QPS search stops within this fraction (default: 0.05)",
}
# --scenarios names; "fixed" is today's fixed-batch measurement (the case's scenario "").
SCENARIO_NAMES = {"fixed": "", **{name: name for name in SCENARIOS}}
SERVER_KEYS = ("qps", "max_batch", "max_delay_ms", "find_max_qps", "pad_batches", "p99_ms",
               "server_min_duration", "server_min_requests", "qps_resolution")


def scenario_values(raw: dict) -> tuple[dict, dict]:
    """The scenario keys: (Spec values, measurement settings). Server keys need the server
    scenario, a server needs rates or the search, the search needs its bound."""
    values: dict = {}
    measure: dict = {}
    if "scenarios" in raw:
        names = _choices("scenarios", raw["scenarios"], tuple(SCENARIO_NAMES))
        values["scenarios"] = tuple(SCENARIO_NAMES[n] for n in names)
    given = [k for k in SERVER_KEYS if raw.get(k) not in (None, False, "")]
    if "server" not in values.get("scenarios", ()):
        if given:
            raise SpecError(f"{given[0]}: only for the server scenario; add --scenarios server")
        return values, measure
    if "qps" in raw:
        values["qps"] = tuple(dict.fromkeys(_number("qps", q) for q in _items("qps", raw["qps"])))
    if "max_batch" in raw:
        values["max_batches"] = _positive_ints("max_batch", raw["max_batch"], MAX_BATCH_SIZE)
    if "max_delay_ms" in raw:
        values["max_delays_ms"] = tuple(dict.fromkeys(
            _number("max_delay_ms", d, float, 0, True) for d in _items("max_delay_ms",
                                                                     raw["max_delay_ms"])))
    if "p99_ms" in raw:
        values["p99_ms"] = _number("p99_ms", raw["p99_ms"])
    if raw.get("find_max_qps") in (True, "true", "1"):
        values["find_max_qps"] = True
    elif raw.get("find_max_qps") not in (None, False, "false", "0"):
        raise SpecError(f"find_max_qps: {raw['find_max_qps']!r} is not true or false")
    if raw.get("pad_batches") in (True, "true", "1"):
        values["pad_batches"] = True
    elif raw.get("pad_batches") not in (None, False, "false", "0"):
        raise SpecError(f"pad_batches: {raw['pad_batches']!r} is not true or false")
    if values.get("find_max_qps") and values.get("qps"):
        raise SpecError("qps and find_max_qps: give one (the search finds the rate itself)")
    if values.get("find_max_qps") and "p99_ms" not in values:
        raise SpecError("find_max_qps needs p99_ms, the bound the p99 must stay under")
    if not values.get("find_max_qps") and not values.get("qps"):
        raise SpecError("scenario server needs qps (target rates) or find_max_qps with p99_ms")
    if "server_min_duration" in raw:
        measure["server_min_duration_s"] = _number("server_min_duration",
                                                   raw["server_min_duration"])
    if "server_min_requests" in raw:
        measure["server_min_requests"] = _number("server_min_requests",
                                                 raw["server_min_requests"], int, 1, True)
    if "qps_resolution" in raw:
        measure["qps_resolution"] = _number("qps_resolution", raw["qps_resolution"])
        if measure["qps_resolution"] > 0.5:
            raise SpecError(f"qps_resolution: {raw['qps_resolution']!r} must be a fraction up "
                            "to 0.5, e.g. 0.05 for 5%")
    return values, measure
