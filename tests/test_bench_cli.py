"""``fastml bench`` end to end at test sizes (``--sizes tiny``): the report folder and its
contents. The numbers are meaningless at these sizes; what is checked is that every family,
floor, ratio and peer is there and numeric."""

import importlib.util
import json
import math

import pytest

from fastml import cli
from fastml.bench import plan as P

HAS = {name: importlib.util.find_spec(mod) is not None
       for name, mod in (("torch", "torch"), ("sklearn", "sklearn"),
                         ("matplotlib", "matplotlib"))}


def _bench(out, *extra):
    status = cli.main(["bench", "--sizes", "tiny", "--out", str(out), *extra])
    assert status == 0
    with open(out / "results.json") as f:
        result = json.load(f)
    return result, (out / "report.md").read_text()


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    return _bench(tmp_path_factory.mktemp("bench"), "--device", "cpu")


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_every_planned_case_is_measured_with_floor_and_peers(cpu_report):
    result, _ = cpu_report
    planned, _ = P.plan(P.PROFILES["tiny"])
    rows = result["rows"]
    assert not result["failures"], result["failures"]
    assert {p.op for p in planned} == {r["op"] for r in rows}
    cases = {}
    for r in rows:
        assert r["device"] == "cpu"
        cases.setdefault((r["op"], r["size"]), {})[r["impl"]] = r
    assert len(cases) == len(planned)
    for (op, _), impls in cases.items():
        floor, mine = impls["floor"], impls["fastml"]
        assert _finite(floor["GB_s"]) and floor["x_floor"] == pytest.approx(1.0)
        assert _finite(mine["GB_s"]) and _finite(mine["x_floor"])
        assert _finite(mine["floor_GB_s"]) and _finite(mine["median_ms"])
        assert len(mine["times_ms"]) == mine["rounds"] >= 1
        assert mine["q1_ms"] <= mine["median_ms"] <= mine["q3_ms"]
        peers = set(impls) - {"floor", "fastml"}
        assert "numpy" in peers or op.startswith(("adamw", "flat_adam")), op
        assert set(mine["speedup"]) == peers
        assert all(_finite(s) for s in mine["speedup"].values())
        if mine.get("check_error") is not None:
            assert mine["check_error"] < 1e-4, op


def test_families_and_peers(cpu_report):
    result, _ = cpu_report
    families = {r["family"] for r in result["rows"]}
    assert families == {"losses", "optimizers", "guards", "metrics"}
    impls = {r["impl"] for r in result["rows"]}
    assert "numpy" in impls
    assert ("torch" in impls) == HAS["torch"]
    assert ("sklearn" in impls) == HAS["sklearn"]


def test_report_markdown(cpu_report):
    result, md = cpu_report
    for section in ("## Summary (CPU", "## Machine", "## Method", "## Memory bandwidth",
                    "## Losses (CPU)", "## Optimizers (CPU)", "## Guards (CPU)",
                    "## Metrics (CPU)", "## Numba compile time", "## GPU"):
        assert section in md, section
    for op in {r["op"] for r in result["rows"]}:
        assert f"| {op} " in md, op
    machine = result["meta"]["machine"]
    assert machine["logical_cpus"] >= 1 and machine["numba_threads"] >= 1
    for name in ("python", "numba", "numpy", "fastml"):
        assert machine["versions"][name], name
        assert f"{name} {machine['versions'][name]}" in md
    assert "vs numpy" in md
    if HAS["torch"]:
        assert "vs torch" in md
    assert "Not requested (`--device cpu`)" in md
    assert "Skipped: profile tiny" in md  # no compile-time subprocesses at test sizes


def test_plots_are_listed_and_embedded(cpu_report):
    pytest.importorskip("matplotlib")
    result, md = cpu_report
    files = result["plots"]["files"]
    families = {r["family"] for r in result["rows"]}
    assert set(files) == {f"cpu_{f}_gbps.png" for f in families} | {"cpu_speedup.png"}
    for name in files:
        assert f"![{name}]({name})" in md


def test_plot_files_are_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    result, _ = _bench(tmp_path, "--device", "cpu", "--only", "mse")
    assert result["plots"]["files"] == ["cpu_losses_gbps.png", "cpu_speedup.png"]
    for name in result["plots"]["files"]:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_without_matplotlib_the_report_says_so(tmp_path, monkeypatch):
    import fastml.bench.plots as plots

    def missing(rows, outdir):
        raise ImportError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(plots, "make_plots", missing)
    result, md = _bench(tmp_path, "--device", "cpu", "--only", "mse")
    assert result["plots"]["files"] == []
    assert "Plots skipped: matplotlib is not installed" in md


def test_no_gpu_is_reported(tmp_path, monkeypatch):
    from fastml.bench import gpu_cases

    monkeypatch.setattr(gpu_cases, "available", lambda: (False, "no CUDA GPU here"))
    result, md = _bench(tmp_path, "--device", "cuda")
    assert result["rows"] == [] and result["gpu"]["available"] is False
    assert "Skipped: no CUDA GPU here" in md


@pytest.mark.cuda
def test_gpu_cases(tmp_path):
    """In numba-cuda's simulator here; on the real GPU under ``FASTML_REAL_GPU=1`` (bench/gpu.sh),
    where PyTorch CUDA peers join."""
    from numba import config, cuda

    if not cuda.is_available():
        pytest.skip("no CUDA device and no simulator")
    result, md = _bench(tmp_path, "--device", "cuda", "--only", "mse,Adam")
    assert not result["failures"], result["failures"]
    rows = result["rows"]
    assert {r["device"] for r in rows} == {"cuda"}
    assert {r["op"] for r in rows} == {"mse", "Adam"}
    assert all(_finite(r["GB_s"]) and _finite(r["x_floor"]) for r in rows)
    assert "## GPU" in md and "### GPU losses" in md and "### GPU optimizers" in md
    if config.ENABLE_CUDASIM:
        assert "simulator" in md
    else:
        import torch

        if torch.cuda.is_available():
            assert {"torch", "torch_fused", "torch_foreach"} <= {r["impl"] for r in rows}
        assert result["gpu"]["copy_GB_s"] > 0


@pytest.mark.parametrize("n", [1, 3, 4, 5, 16384, 16387, 40000])
def test_read_floors_read_every_element_once(n):
    """The read-only floor kernels split chunks into interleaved streams; each element must
    still be read exactly once, tails included."""
    import numpy as np

    from fastml.bench import cases as C

    rng = np.random.default_rng(n)
    a = rng.integers(0, 1000, n)
    b = rng.integers(0, 1000, n)
    assert C.read2_sum(a, b) == a.sum() + b.sum()
    g = rng.integers(-8, 8, n).astype(np.float64)  # exact sums in any order
    before = g.copy()
    assert C.read1_then_scale(g, 0.5) == before.sum()
    np.testing.assert_array_equal(g, before * 0.5)
