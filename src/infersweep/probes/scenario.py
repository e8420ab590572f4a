"""The server scenario's columns: declared like a probe's, so they reach results.csv, results.json,
report.md and report.html the way every measured figure does.

They are filled by the worker's server runner (run/serve.py) from the run's summary
(measure/server.py ``ServerSummary``), not by hooks: this probe never applies to a case.
"""

from __future__ import annotations

from infersweep.probes.base import Column, Probe, ProbeContext

_C = Column
COLUMNS = (
    _C("target_qps", "target QPS", ".1f", in_table=False),
    _C("achieved_qps", "achieved QPS", ".1f", in_table=False),
    _C("request_ms_p50", "request p50 (ms)", ".3f", " ms", in_table=False),
    _C("request_ms_p90", "request p90 (ms)", ".3f", " ms", in_table=False),
    _C("request_ms_p99", "request p99 (ms)", ".3f", " ms", in_table=False),
    _C("request_ms_p999", "request p99.9 (ms)", ".3f", " ms", in_table=False),
    _C("mean_batch", "mean batch formed", ".2f", in_table=False),
    _C("queue_share_pct", "queueing share (%)", ".1f", "%", in_table=False),
    _C("requests", "requests", "d", in_table=False),
    _C("run_s", "run (s)", ".2f", " s", in_table=False),
    _C("p99_bound_ms", "p99 bound (ms)", "g", " ms", in_table=False),
    _C("max_qps", "max QPS under the bound", ".1f", in_table=False),
    _C("valid", "valid", in_table=False),
    _C("invalid_reason", "invalid because", in_table=False),
)
# The ServerSummary fields that are columns (max_qps is the search's).
SERVER_FIELDS = tuple(c.name for c in COLUMNS if c.name != "max_qps")


class ScenarioColumns(Probe):
    name = "scenario"
    columns = COLUMNS
    place_after = "throughput_pipelined_ips"

    def applies(self, ctx: ProbeContext) -> bool:
        return False


PROBES = [ScenarioColumns]
