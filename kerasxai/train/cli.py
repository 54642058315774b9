"""``kerasxai train`` / ``python -m kerasxai.train``: options, and one-line errors (exit status 2)."""

from __future__ import annotations

import argparse
import sys

from kerasxai._startup import start_tensorflow
from kerasxai.train.config import Config, TrainError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"kerasxai: error: {message} (kerasxai train --help lists the options)", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    """The command's options; each maps onto the ``Config`` field of the same name."""
    d = Config(data_dir="", out="")
    p = _Parser(prog="kerasxai train",
                description="Fine-tune VGG16 (or train a small CNN offline) on a folder of two classes, then "
                            "explain it. Refuses a non-empty --out unless --resume or --overwrite.")
    p.add_argument("--data-dir", required=True,
                   help="PetImages/ (Cat/, Dog/, or any class folders) or a flat folder of cat.N.jpg, dog.N.jpg")
    p.add_argument("--out", required=True, help="run folder: checkpoint, logs, figures")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="held out for validation (0.24)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default 1e-4 for VGG16, 1e-3 for the small base")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--weights", default=d.weights,
                   help="'imagenet' (downloaded), 'none' (random: offline), or a weights file for VGG16's base")
    p.add_argument("--base", choices=("auto", "vgg16", "small"), default=d.base,
                   help="auto: vgg16 with pretrained weights, small (a CNN trained from scratch) with --weights none")
    p.add_argument("--freeze-base", action=argparse.BooleanOptionalAction, default=None,
                   help="default: frozen when pretrained, trained when random")
    p.add_argument("--head", choices=("auto", "flatten", "gap"), default=d.head,
                   help="auto: flatten on VGG16 (the original experiment), gap on the small base (CAM applies)")
    p.add_argument("--output", choices=("sigmoid", "softmax"), default=d.output)
    p.add_argument("--classes", type=int, default=d.classes, help="number of class folders expected (2)")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping: epochs without better validation accuracy (3 pretrained, 5 from scratch)")
    p.add_argument("--fine-tune-epochs", type=int, default=d.fine_tune_epochs,
                   help="second phase: unfreeze the base's last block for this many epochs")
    p.add_argument("--fine-tune-lr", type=float, default=d.fine_tune_lr)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                   help="random horizontal flips of the training images")
    p.add_argument("--feature-cache", action=argparse.BooleanOptionalAction, default=d.feature_cache,
                   help="frozen base without --augment: compute its features once (default on)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--quiet", action="store_true")
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"kerasxai: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Runs the command; returns the exit status (2 for a mistake in the data or options, 130 for Ctrl-C)."""
    import warnings

    warnings.showwarning = _one_line_warning
    args = vars(parser().parse_args(argv))
    args["verbose"] = 0 if args.pop("quiet") else 1
    start_tensorflow()
    from kerasxai.train.run import train  # after the options are read: --help needs no TensorFlow

    try:
        train(Config(**args))
    except TrainError as err:
        print(f"kerasxai: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # train() has said what was saved and how to resume
    return 0
