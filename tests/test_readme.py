"""Every ```python block of README.md runs as written, and the classic examples give what the
README says they give: theta converges to the truth, the metrics equal scikit-learn's, and the
printed values quoted in the prose are the ones the code prints.

Each block runs in a fresh namespace, in this process, with its output captured: a block must be
self-contained (its own imports).
"""

import contextlib
import functools
import io
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    """(id, code) of each python block; the id names the heading above it and its line."""
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        headings = re.findall(r"^#+ (.+)$", text[:m.start()], re.M)
        title = re.sub(r"\W+", "-", headings[-1] if headings else "top").strip("-").lower()
        out.append((f"{title}@{line}", m.group(1)))
    return out


BLOCKS = _blocks()


@functools.cache
def run_block(index):
    """Execute block ``index``; return (its namespace, what it printed)."""
    name, code = BLOCKS[index]
    namespace = {"__name__": f"readme_{index}"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), _one_thread():
        exec(compile(code, f"README.md:{name}", "exec"), namespace)
    return namespace, printed.getvalue()


@contextlib.contextmanager
def _one_thread():
    """The examples step arrays of a few elements hundreds of times; on a busy CI machine each
    parallel region can wait a scheduler time slice for its worker threads (milliseconds per
    step), so run the kernels on one thread. The results do not depend on it."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def block_with(snippet):
    """The namespace and output of the one block containing ``snippet``."""
    found = [i for i, (_, code) in enumerate(BLOCKS) if snippet in code]
    assert len(found) == 1, f"expected one README block with {snippet!r}; found {len(found)}"
    return run_block(found[0])


def test_readme_has_the_examples():
    assert len(BLOCKS) >= 5, [name for name, _ in BLOCKS]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[name for name, _ in BLOCKS])
def test_block_runs(index):
    run_block(index)


@pytest.mark.parametrize("optimizer", ["fastml.SGD(", "fastml.Adam("])
def test_theta_converges(optimizer):
    ns, printed = block_with(optimizer)
    theta = ns["theta"]
    assert theta.dtype == np.float64 and theta.shape == (1,)
    assert abs(theta[0] - ns["true_theta"]) < 1e-3, theta
    assert printed.splitlines()[-1] == f"theta {theta[0]:.6f} (true {ns['true_theta']})"


def test_training_loop_learns():
    import fastml

    ns, printed = block_with("fastml.FlatParams(")
    assert fastml.metrics.accuracy(ns["y"], ns["scores"]) > 0.9
    assert ns["info"].applied and ns["info"].skipped_total == 0
    assert "accuracy" in printed


def test_metrics_equal_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    ns, _ = block_with("from fastml import metrics")
    y, labels = ns["y_true"], (ns["proba"] > 0.5).astype(int)
    strict = (ns["proba"] > 0.65).astype(int)
    assert ns["acc"] == sk.accuracy_score(y, labels)
    assert ns["rec"] == sk.recall_score(y, labels)
    assert ns["f1"] == sk.f1_score(y, labels)
    assert ns["f1_strict"] == sk.f1_score(y, strict)
    y3, top = ns["y3"], ns["scores"].argmax(axis=1)
    assert ns["acc3"] == sk.accuracy_score(y3, top)
    assert ns["rec3"] == pytest.approx(sk.recall_score(y3, top, average="macro"), abs=1e-15)
    assert ns["f1_3"] == pytest.approx(sk.f1_score(y3, top, average="macro"), abs=1e-15)


def test_metrics_output_quoted_in_readme():
    """The prose after the metrics block quotes its output; the quote must stay true."""
    _, printed = block_with("from fastml import metrics")
    text = README.read_text()
    for line in printed.splitlines():
        assert f"`{line}`" in text, line
