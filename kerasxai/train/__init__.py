"""Reproduce the VGG16 dogs-vs-cats fine-tune, then explain it; offline, a small CNN learns instead.

    python -m kerasxai.train --data-dir PetImages --out runs/vgg16 [options]
    kerasxai train --data-dir PetImages --out runs/vgg16 [options]

With ImageNet weights (the original experiment): VGG16's convolutional base
frozen under a new head (``flatten``, or ``gap`` so that CAM applies), one
sigmoid unit or a softmax; the frozen base's features are computed once and
the head trains on them (``--no-feature-cache`` recomputes them every epoch);
early stopping on validation accuracy with the best weights restored; an
optional second phase unfreezes ``block5`` at a low learning rate.

With ``--weights none`` (offline) the base is random: the run says so, and
trains a small CNN from scratch instead (``--base small``), which learns
generated cats and dogs in seconds (``python -m kerasxai.train.demo_data``
writes such a folder). When validation accuracy is not above chance, the
console, the summary and every figure say so, and no heatmap is drawn.

Everything lands in ``--out``: ``best.keras``, ``log.csv``, TensorBoard logs
(with Grad-CAM overlays of fixed validation images each epoch),
``bad_files.txt``, ``curves.png``, ``confusion.png``, ``misclassified.png``,
``explanations.png``, ``summary.json``. A non-empty ``--out`` is refused unless
``--resume`` (continue after the last completed epoch) or ``--overwrite``.
No data file is ever changed.

Modules: ``config`` (options), ``data`` (finding and checking files),
``pipeline`` (tf.data), ``model``, ``checkpoints`` (the run folder: resume state, log,
best checkpoint), ``callbacks``, ``run`` (the phases), ``report`` (evaluation, the
chance test, summary), ``figures``, ``explaining`` (the only calls into
kerasxai's explanation API), ``cli``, ``demo_data`` (a generated
PetImages-like folder with the real traps).
"""

import importlib

# Names are loaded on first use: ``kerasxai train --help`` and ``python -m kerasxai.train --help``
# answer without importing TensorFlow, and ``python -m kerasxai.train.demo_data`` finds its module
# not imported yet.
_EXPORTS = {
    "kerasxai.train.cli": ("main", "parser"),
    "kerasxai.train.config": ("Config", "TrainError", "resolve"),
    "kerasxai.train.data": ("IMAGE_EXTENSIONS", "check_files", "find_files", "scan_data"),
    "kerasxai.train.report": ("chance_check",),
    "kerasxai.train.run": ("train",),
    "kerasxai.train.demo_data": ("write_demo_folder",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["Config", "TrainError", "train", "find_files", "scan_data", "check_files", "chance_check",
           "write_demo_folder", "resolve", "main", "parser", "IMAGE_EXTENSIONS"]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerasxai.train' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + __all__)
