"""A probe from test code alone (tests/toy_probe.py), through the real CLI and worker processes."""

import csv
import json
import os
from html.parser import HTMLParser

import pytest
from conftest import FAST, cli
from toy_probe import pixels

BATCHES = (1, 3)
SIZE = 8


def _sweep(out, **env):
    proc = cli("run", "--backends", "fault-ok", "--batches", ",".join(map(str, BATCHES)),
               "--sizes", SIZE, "--out", out, *FAST,
               env={**os.environ, "INFERSWEEP_PLUGINS": "toy_probe", **env})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    with open(out / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    return csv_rows, json.loads((out / "results.json").read_text())["results"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The run directory of one sweep with the toy probe, and its (csv rows, json rows)."""
    out = tmp_path_factory.mktemp("toy") / "run"
    return out, _sweep(out)


@pytest.fixture(scope="module")
def toy_sweep(toy_run):
    return toy_run[1]


def test_the_toy_column_and_its_values_reach_csv_and_json(toy_sweep):
    csv_rows, json_rows = toy_sweep
    assert list(csv_rows[0])[-2:] == ["toy_pixels", "warnings"]  # placed before warnings
    for rows in (csv_rows, json_rows):
        assert sorted((int(r["batch_size"]), int(r["toy_pixels"])) for r in rows) == [
            (b, pixels(b, SIZE)) for b in BATCHES]
    assert all(r["info"]["toy_batch_shape"] == [r["batch_size"], 3, SIZE, SIZE]
               for r in json_rows)


def test_without_the_plugin_there_is_no_toy_column(tmp_path):
    proc = cli("run", "--backends", "fault-ok", "--batches", "1", "--sizes", SIZE,
               "--out", tmp_path / "run", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "toy_pixels" not in (tmp_path / "run" / "results.csv").read_text()


@pytest.mark.parametrize("hook", ["start_group", "before", "after_warmup", "after"])
def test_a_failing_probe_costs_a_warning_not_the_timing(tmp_path, hook):
    csv_rows, _ = _sweep(tmp_path / "run", TOY_PROBE_FAIL=hook)
    assert len(csv_rows) == len(BATCHES)
    for row in csv_rows:
        assert row["status"] == "ok", row
        assert float(row["latency_ms_median"]) > 0 and int(row["iterations"]) >= 5
        assert f"probe toy failed in {hook}: RuntimeError: toy probe" in row["warnings"]
        assert row["toy_pixels"] == ""


class _ResultsTable(HTMLParser):
    """report.html's #results table as header texts and rows of (cell attributes, text)."""

    def __init__(self):
        super().__init__()
        self.heads, self.rows, self._inside, self._cell = [], [], False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._inside = dict(attrs).get("id") == "results"
        elif self._inside and tag == "tr":
            self.rows.append([])
        elif self._inside and tag in ("th", "td"):
            self._cell = (dict(attrs), [])

    def handle_data(self, data):
        if self._cell:
            self._cell[1].append(data)

    def handle_endtag(self, tag):
        if tag == "table":
            self._inside = False
        elif self._cell and tag in ("th", "td"):
            attrs, text = self._cell
            self._cell = None
            if tag == "th":
                self.heads.append("".join(text))
            else:
                self.rows[-1].append((attrs, "".join(text)))


def _md_results(md: str) -> list[dict]:
    """report.md's results table as {header: cell} per row."""
    table = md.split("## Results\n\n")[1].split("\n\n")[0].splitlines()

    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    return [dict(zip(cells(table[0]), cells(line))) for line in table[2:]]


def test_the_toy_column_and_its_values_reach_report_md_and_html(toy_run):
    out, _rows = toy_run
    md_rows = _md_results((out / "report.md").read_text())
    assert sorted((r["shape"], r["pixels per batch"]) for r in md_rows) == [
        (f"({b}, 3, {SIZE}, {SIZE})", str(pixels(b, SIZE))) for b in BATCHES]
    table = _ResultsTable()
    table.feed((out / "report.html").read_text())
    assert table.heads.count("pixels per batch") == 1
    col = table.heads.index("pixels per batch")
    batch = table.heads.index("batch")
    cells = sorted((int(row[batch][1]), row[col]) for row in table.rows if row)
    assert cells == [(b, ({"class": "num", "data-sort": f"{float(pixels(b, SIZE))!r}"},
                          str(pixels(b, SIZE)))) for b in BATCHES]
