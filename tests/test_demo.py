"""``fastml demo`` in-process, on a few epochs: both models learn the digits, the PyTorch loop
reaches the same parameters and accuracy, and the command line prints the comparison (or says
why it skips it)."""

import argparse
import io
import sys

import pytest

import fastml.cli
from fastml.demo import add_arguments, run


def demo_args(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def results():
    out = io.StringIO()
    found = run(demo_args("--epochs", "4", "--no-progress"), out=out)
    return found, out.getvalue()


def test_both_models_learn(results):
    found, _ = results
    fastml_runs = {r.model: r for r in found if r.framework == "fastml"}
    assert set(fastml_runs) == {"softmax", "mlp"}
    for r in fastml_runs.values():
        assert len(r.epochs) == 4 and r.skipped == 0
        assert r.epochs[-1].accuracy > 0.85 and r.epochs[-1].f1 > 0.85, r.epochs
        assert r.epochs[-1].loss < r.epochs[0].loss
        assert r.samples_per_second > 0


def test_torch_trains_the_same_model(results):
    pytest.importorskip("torch")
    found, printed = results
    by = {(r.model, r.framework): r for r in found}
    for model in ("softmax", "mlp"):
        f, t = by[model, "fastml"], by[model, "torch"]
        # same init, batches and hyper-parameters: float32 rounding apart, the same weights
        # (about 1e-7 here; rounding differences grow with the epochs)
        for name in f.params:
            assert abs(f.params[name] - t.params[name]).max() < 1e-3, name
        assert abs(f.epochs[-1].accuracy - t.epochs[-1].accuracy) <= 2 / 360
        assert f"fastml vs PyTorch, {model}: test accuracy" in printed
    assert "samples/s" in printed and "vs torch" in printed


def test_command_line_without_torch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    code = fastml.cli.main(["demo", "--model", "softmax", "--epochs", "2", "--data",
                            "synthetic", "--batch-size", "128"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "PyTorch is not installed: skipping the comparison" in out
    assert "synthetic" in out and "softmax  fastml" in out and "fastml vs PyTorch" not in out
    assert "softmax fastml" in err  # the progress bar


def test_bad_arguments():
    with pytest.raises(ValueError, match="epochs"):
        run(demo_args("--epochs", "0", "--no-torch"), out=io.StringIO())
    with pytest.raises(ValueError, match="threads"):
        run(demo_args("--epochs", "1", "--threads", "0", "--no-torch", "--no-progress"),
            out=io.StringIO())
