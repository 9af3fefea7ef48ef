"""The ``fastml`` command: ``fastml bench`` writes the benchmark report (the main job);
``fastml demo`` trains small models with fastml next to the same loops in PyTorch."""

import argparse
import sys


def _demo(args):
    """Softmax regression and an MLP trained with fastml (fused cross-entropy, a guarded AdamW
    over one FlatParams, a schedule, metrics), next to the same loops in PyTorch."""
    from .demo import main

    return main(args)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train softmax regression and an MLP with fastml, "
                          "compared with PyTorch")
    from .demo import add_arguments

    add_arguments(demo)
    demo.set_defaults(run=_demo)
    from .bench.command import add_parser as add_bench_parser  # `fastml bench`: the report

    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
