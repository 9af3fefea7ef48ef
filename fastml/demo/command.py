"""``fastml demo``: train softmax regression and an MLP with fastml, the same loops with
PyTorch on the CPU, and print accuracy, macro F1 and throughput side by side."""

import contextlib
import sys

from . import data as D
from . import models, torch_peer, train

MODELS = ("softmax", "mlp")


def add_arguments(parser):
    parser.add_argument("--model", choices=(*MODELS, "both"), default="both")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=train.Config().lr,
                        help="peak learning rate (after warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("auto", "digits", "synthetic"), default="auto",
                        help="auto: scikit-learn's digits when installed, else synthetic")
    # One thread by default: these models are far too small for threads to pay off (PyTorch
    # runs such small ops serially anyway), and on a busy machine a parallel region can wait a
    # whole scheduler time slice for its workers, which would make the timings noise.
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for fastml's kernels, NumPy's BLAS and PyTorch alike")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextlib.contextmanager
def _same_threads(torch, n):
    """Run fastml's kernels (numba), NumPy's BLAS and PyTorch on ``n`` threads each (None:
    numba's current thread count); yields ``n``."""
    import numba

    with contextlib.ExitStack() as stack:
        before = numba.get_num_threads()
        n = before if n is None else n
        if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"threads must be in [1, {numba.config.NUMBA_NUM_THREADS}]; got {n}")
        numba.set_num_threads(n)
        stack.callback(numba.set_num_threads, before)
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
        except ImportError:
            pass
        if torch is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, before)
        yield n


def _import_torch(no_torch, out):
    if no_torch:
        return None
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: skipping the comparison (pip install torch)", file=out)
        return None
    return torch


def run(args, out=None):
    """Train the chosen models; print per-epoch metrics and the comparison. Returns the
    ``train.Result`` list (fastml, then torch, per model)."""
    out = sys.stdout if out is None else out
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError(f"epochs and batch size must be positive; got {args.epochs} and "
                         f"{args.batch_size}")
    torch = _import_torch(args.no_torch, out)
    data = D.load(args.data, args.seed)
    cfg = train.Config(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    batches = D.epoch_batches(len(data.y_train), cfg.batch_size, cfg.epochs, args.seed)
    with _same_threads(torch, args.threads) as threads:
        print(f"data: {data.name}: {len(data.y_train)} train / {len(data.y_test)} test "
              f"samples, {data.num_features} features, {data.num_classes} classes", file=out)
        print(f"AdamW lr {cfg.lr:g} (linear warm-up {cfg.warmup_fraction:.0%} of the steps, "
              f"then cosine to 0), weight decay {cfg.weight_decay:g}, clip norm "
              f"{cfg.clip_norm:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, seed "
              f"{args.seed}, {_threads(threads)}", file=out)
        results = []
        for kind in MODELS if args.model == "both" else (args.model,):
            model = models.build(kind, data.num_features, data.num_classes)
            init = model.init(args.seed)
            pair = [train.train(model, kind, data, batches, cfg, init, not args.no_progress)]
            if torch is not None:
                pair.append(torch_peer.train(model, kind, data, batches, cfg, init,
                                             not args.no_progress))
            _print_epochs(pair, out)
            results.extend(pair)
    _print_summary(results, threads, out)
    return results


def main(args):
    run(args)
    return 0


def _print_epochs(pair, out):
    head = f"\n{pair[0].model}: epoch"
    cols = "".join(f" | {r.framework + ' loss':>11} {'acc':>6} {'F1':>6}" for r in pair)
    print(head + cols, file=out)
    for e in range(len(pair[0].epochs)):
        line = f"{pair[0].model}: {e + 1:5d}"
        for r in pair:
            ep = r.epochs[e]
            line += f" | {ep.loss:11.4f} {ep.accuracy:6.4f} {ep.f1:6.4f}"
        print(line, file=out)


def _threads(n):
    return f"{n} thread" + ("s" if n != 1 else "")


def _max_param_diff(a, b):
    return max(float(abs(a.params[k].astype("float64") - b.params[k]).max()) for k in a.params)


def _print_summary(results, threads, out):
    print(f"\nfinal test metrics and CPU training throughput ({_threads(threads)}; samples/s "
          "after the first epoch, which holds JIT compile or cache load and warm-up)", file=out)
    print(f"{'model':8} {'framework':9} {'test acc':>8} {'macro F1':>8} {'1st epoch s':>11} "
          f"{'samples/s':>10} {'vs torch':>8} {'skipped':>7}", file=out)
    by_model = {}
    for r in results:
        by_model.setdefault(r.model, {})[r.framework] = r
    for model, runs in by_model.items():
        peer = runs.get("torch")
        for r in runs.values():
            last = r.epochs[-1]
            speed = f"{r.samples_per_second / peer.samples_per_second:7.2f}x" if peer else "      -"
            print(f"{model:8} {r.framework:9} {last.accuracy:8.4f} {last.f1:8.4f} "
                  f"{r.first_epoch_seconds:11.3f} {r.samples_per_second:10,.0f} {speed:>8} "
                  f"{r.skipped:7d}", file=out)
    for model, runs in by_model.items():
        if "torch" in runs:
            f, t = runs["fastml"], runs["torch"]
            print(f"fastml vs PyTorch, {model}: test accuracy {f.epochs[-1].accuracy:.4f} vs "
                  f"{t.epochs[-1].accuracy:.4f}, macro F1 {f.epochs[-1].f1:.4f} vs "
                  f"{t.epochs[-1].f1:.4f}, max |parameter difference| "
                  f"{_max_param_diff(f, t):.2e}, throughput "
                  f"{f.samples_per_second / t.samples_per_second:.2f}x", file=out)
