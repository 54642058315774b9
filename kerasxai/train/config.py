"""The options of a run (``Config``), their checks, and what ``"auto"`` resolves to."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys

# Options a resumed run must share with the run it continues (the others may change).
SAME_ON_RESUME = ("image_size", "batch_size", "val_fraction", "learning_rate", "seed", "weights", "base",
                  "freeze_base", "head", "output", "fine_tune_lr", "classes", "augment")
MIN_SIZE = {"vgg16": 32, "small": 16}  # five / two 2x2 poolings


class TrainError(ValueError):
    """A mistake in the data or the options: the command prints it as one line and exits with status 2."""


@dataclasses.dataclass
class Config:
    """Options of a run; the command line maps one to one onto these (``--data-dir`` is ``data_dir``).

    ``"auto"`` and ``None`` values are resolved by ``resolve``: with ImageNet
    weights, a frozen VGG16 base under a flatten head at learning rate 1e-4,
    patience 3 (the original experiment); with ``weights="none"`` the base is
    random, so it is a small CNN trained from scratch (``base="small"``) under
    a GAP head at 1e-3, patience 5.

    Examples:
        >>> Config(data_dir="PetImages", out="runs/vgg16").image_size
        224
    """

    data_dir: str
    out: str
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    val_fraction: float = 6000 / 25000
    learning_rate: float | None = None  # None: 1e-4 for VGG16, 1e-3 for the small base
    seed: int = 0
    weights: str = "imagenet"  # "imagenet", "none" (random: offline), or a weights file for the base
    base: str = "auto"  # "vgg16", "small" (a small CNN trained from scratch); auto: small when weights="none"
    freeze_base: bool | None = None  # None: frozen when the weights are pretrained, trained when random
    head: str = "auto"  # "flatten" (the original experiment), "gap" (CAM applies); auto: flatten on VGG16
    output: str = "sigmoid"  # or "softmax"
    patience: int | None = None  # None: 3 with a pretrained base, 5 when it is trained from scratch
    fine_tune_epochs: int = 0  # second phase: unfreeze the base's last block at fine_tune_lr
    fine_tune_lr: float = 1e-5
    classes: int = 2
    augment: bool = False  # random horizontal flips of the training images
    feature_cache: bool = True  # frozen base without augmentation: its features computed once
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a ``Config`` resolves to."""

    base: str
    pretrained: bool
    freeze_base: bool
    head: str
    learning_rate: float
    patience: int
    last_block: str  # layer-name prefix unfrozen by fine-tuning


def _is_random(weights) -> bool:
    return weights is None or str(weights).lower() == "none"


def resolve(cfg: Config) -> Settings:
    """Checks ``cfg`` and resolves its ``"auto"`` values; raises ``TrainError`` naming the option.

    Examples:
        >>> resolve(Config(data_dir="d", out="o", weights="none")).base
        'small'
    """
    positive = {"image_size": cfg.image_size, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "classes": cfg.classes}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be a positive whole number. Received: {value!r}")
    if cfg.classes < 2:
        raise TrainError(f"--classes must be at least 2. Received: {cfg.classes}")
    if not 0 < cfg.val_fraction < 1:
        raise TrainError(f"--val-fraction must be between 0 and 1 (0.24 holds out 24%). Received: {cfg.val_fraction}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise TrainError(f"--seed must be a whole number, 0 or more. Received: {cfg.seed!r}")
    for name in ("patience", "fine_tune_epochs"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:
            raise TrainError(f"--{name.replace('_', '-')} must be 0 or more. Received: {getattr(cfg, name)}")
    for name in ("learning_rate", "fine_tune_lr"):
        value = getattr(cfg, name)
        if value is not None and not value > 0:
            raise TrainError(f"--{name.replace('_', '-')} must be positive. Received: {value}")
    if cfg.resume and cfg.overwrite:
        raise TrainError("--resume continues the run in --out and --overwrite replaces it: choose one")
    if cfg.output not in ("sigmoid", "softmax"):
        raise TrainError(f"--output must be 'sigmoid' or 'softmax'. Received: {cfg.output!r}")
    if cfg.output == "sigmoid" and cfg.classes != 2:
        raise TrainError(f"--output sigmoid is for two classes; use --output softmax for {cfg.classes}")

    random = _is_random(cfg.weights)
    if not random and str(cfg.weights) != "imagenet" and not os.path.isfile(str(cfg.weights)):
        raise TrainError(f"--weights must be 'imagenet', 'none' or a weights file. Received: {cfg.weights!r}")
    base = cfg.base if cfg.base != "auto" else ("small" if random else "vgg16")
    if base not in MIN_SIZE:
        raise TrainError(f"--base must be 'vgg16', 'small' or 'auto'. Received: {cfg.base!r}")
    if base == "small" and not random:
        raise TrainError("--base small has no pretrained weights: it is trained from scratch; use --weights none")
    if cfg.image_size < MIN_SIZE[base]:
        why = ("VGG16's five 2x2 poolings need at least 32x32 inputs (it was trained at 224x224)" if base == "vgg16"
               else "the small CNN's poolings need at least 16x16 inputs")
        raise TrainError(f"--image-size {cfg.image_size} is too small: {why}")
    freeze = (not random) if cfg.freeze_base is None else bool(cfg.freeze_base)
    if cfg.fine_tune_epochs and not freeze:
        raise TrainError("--fine-tune-epochs unfreezes the last block of a frozen base, but this base is trained "
                         "whole already (random weights): drop --fine-tune-epochs, or add --freeze-base")
    head = cfg.head if cfg.head != "auto" else ("flatten" if base == "vgg16" else "gap")
    if head not in ("flatten", "gap"):
        raise TrainError(f"--head must be 'flatten', 'gap' or 'auto'. Received: {cfg.head!r}")
    lr = cfg.learning_rate if cfg.learning_rate is not None else (1e-4 if base == "vgg16" else 1e-3)
    # from scratch, validation accuracy wanders more in the first epochs than on a pretrained base
    patience = cfg.patience if cfg.patience is not None else (3 if not random else 5)
    last_block = "block5" if base == "vgg16" else "block3"
    return Settings(base=base, pretrained=not random, freeze_base=freeze, head=head, learning_rate=lr,
                    patience=patience, last_block=last_block)


def resume_command(cfg: Config) -> str:
    """The command that continues the run of ``cfg`` (its non-default options, then ``--resume``).

    Examples:
        >>> resume_command(Config(data_dir="pets", out="runs/a b", weights="none")).split(" --data-dir ")[1]
        "pets --out 'runs/a b' --weights none --resume"
    """
    defaults = Config(data_dir="", out="")
    words = ["kerasxai", "train"] if os.path.basename(sys.argv[0] or "") == "kerasxai" else [
        "python", "-m", "kerasxai.train"]
    words += ["--data-dir", cfg.data_dir, "--out", cfg.out]
    for field in dataclasses.fields(Config):
        name, value = field.name, getattr(cfg, field.name)
        if name in ("data_dir", "out", "resume", "overwrite", "verbose") or value == getattr(defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            words += [flag, str(value)]
    if not cfg.verbose:
        words.append("--quiet")
    return shlex.join(words + ["--resume"])
