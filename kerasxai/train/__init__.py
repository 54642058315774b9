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
``pipeline`` (tf.data), ``model``, ``runfolder`` (resume state, log, best
checkpoint), ``callbacks``, ``run`` (the phases), ``report`` (evaluation, the
chance test, summary), ``figures``, ``explaining`` (the only calls into
kerasxai's explanation API), ``cli``, ``demo_data`` (a generated
PetImages-like folder with the real traps).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerasxai.train.cli import main, parser  # noqa: E402
from kerasxai.train.config import Config, TrainError, resolve  # noqa: E402
from kerasxai.train.data import IMAGE_EXTENSIONS, check_files, find_files, scan_data  # noqa: E402
from kerasxai.train.report import chance_check  # noqa: E402
from kerasxai.train.run import train  # noqa: E402

__all__ = ["Config", "TrainError", "train", "find_files", "scan_data", "check_files", "chance_check",
           "write_demo_folder", "resolve", "main", "parser", "IMAGE_EXTENSIONS"]


def __getattr__(name):  # demo_data is imported on use, so that ``python -m kerasxai.train.demo_data`` runs cleanly
    if name == "write_demo_folder":
        from kerasxai.train.demo_data import write_demo_folder

        return write_demo_folder
    raise AttributeError(f"module 'kerasxai.train' has no attribute '{name}'")
