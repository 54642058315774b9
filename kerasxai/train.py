"""Reproduce the VGG16 dogs-vs-cats transfer-learning experiment, then explain it.

    python -m kerasxai.train --data-dir PetImages --out runs/vgg16 [options]

VGG16 with ImageNet weights, its convolutional base frozen, a new head
(``flatten`` as in the original experiment, or ``gap`` so that CAM applies),
one sigmoid unit or a 2-way softmax; early stopping on validation accuracy
with the best weights restored, a checkpoint of the best model, and an
optional second phase that unfreezes the last conv block at a low learning
rate. Everything lands in ``--out``: the checkpoint ``best.keras``, ``log.csv``,
TensorBoard logs (with Grad-CAM overlays of fixed validation images each
epoch), ``bad_files.txt``, ``curves.png``, ``confusion.png``,
``misclassified.png``, ``explanations.png`` and ``summary.json``.

Data layouts (found automatically):
- class folders: ``DIR/Cat/*.jpg``, ``DIR/Dog/*.jpg`` (Kaggle's ``PetImages``; also
  ``DIR/PetImages/Cat``...);
- flat, labelled by file name: ``DIR/cat.0.jpg``, ``DIR/dog.0.jpg`` (Kaggle's ``train/``).

Every file is decoded once before training; the ones that fail (empty,
truncated, not an image — the real data set has some) are skipped and listed
in ``bad_files.txt``. No file is modified or deleted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass
class Config:
    """Options of a run; the command line maps one to one onto these."""

    data_dir: str
    out: str
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    val_fraction: float = 6000 / 25000
    learning_rate: float = 1e-4
    seed: int = 0
    weights: str = "imagenet"  # or "none" for offline runs
    head: str = "flatten"  # or "gap" (CAM applies)
    output: str = "sigmoid"  # or "softmax" (2 units)
    patience: int = 3
    fine_tune_epochs: int = 0  # second phase: unfreeze block5 at fine_tune_lr
    fine_tune_lr: float = 1e-5
    verbose: int = 1


# --------------------------------------------------------------------------- data


def find_files(data_dir: str):
    """``(paths, labels, class_names)`` for either supported layout.

    Example:
        >>> find_files("/no/such/dir")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Data folder '/no/such/dir' does not exist.
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Data folder '{data_dir}' does not exist.")
    entries = sorted(os.listdir(data_dir))
    subdirs = [e for e in entries if os.path.isdir(os.path.join(data_dir, e))]
    if len(subdirs) == 1 and not any(e.lower().endswith(IMAGE_EXTENSIONS) for e in entries):
        return find_files(os.path.join(data_dir, subdirs[0]))  # e.g. DIR/PetImages/Cat
    if len(subdirs) >= 2:
        class_names = subdirs
        paths, labels = [], []
        for label, name in enumerate(class_names):
            folder = os.path.join(data_dir, name)
            for f in sorted(os.listdir(folder)):
                if os.path.isfile(os.path.join(folder, f)):
                    paths.append(os.path.join(folder, f))
                    labels.append(label)
        return paths, np.array(labels, np.int32), [n.lower() for n in class_names]
    pattern = re.compile(r"^([A-Za-z]+)[._-]")
    named = [(f, pattern.match(f)) for f in entries if os.path.isfile(os.path.join(data_dir, f))]
    names = sorted({m.group(1).lower() for _, m in named if m})
    if len(names) < 2:
        raise ValueError(
            f"'{data_dir}' holds neither class folders (Cat/, Dog/) nor files named like "
            "cat.0.jpg and dog.0.jpg."
        )
    paths = [os.path.join(data_dir, f) for f, m in named if m]
    labels = np.array([names.index(m.group(1).lower()) for _, m in named if m], np.int32)
    return paths, labels, names


def check_files(paths):
    """Decodes every file with TensorFlow; returns ``(good_mask, [(path, reason), ...])``."""
    good = np.zeros(len(paths), bool)
    bad = []
    for i, path in enumerate(paths):
        try:
            data = tf.io.read_file(path)
            if int(tf.strings.length(data)) == 0:
                raise ValueError("empty file")
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError("no pixels")
            good[i] = True
        except (tf.errors.OpError, ValueError) as err:
            reason = getattr(err, "message", str(err)).splitlines()[0]
            reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", reason)[:120]
            bad.append((path, reason))
    return good, bad


def make_dataset(paths, labels, size, preprocess, batch_size, shuffle_seed=None):
    """A batched, prefetched ``tf.data.Dataset`` of (preprocessed image, label)."""

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size))
        return preprocess(image), label

    ds = tf.data.Dataset.from_tensor_slices((list(paths), labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_display(paths, size):
    """uint8 RGB images for figures."""
    from kerasxai.images import load_image

    return np.stack([load_image(p, (size, size)) for p in paths])


# --------------------------------------------------------------------------- model


def build_model(cfg: Config, n_classes: int = 2):
    """VGG16 base (frozen) inside a new head; returns ``(model, base)``."""
    weights = None if str(cfg.weights).lower() == "none" else cfg.weights
    base = keras.applications.VGG16(
        include_top=False, weights=weights, input_shape=(cfg.image_size, cfg.image_size, 3)
    )
    base.trainable = False
    units, activation = (1, "sigmoid") if cfg.output == "sigmoid" else (n_classes, "softmax")
    if cfg.head == "flatten":
        head = [keras.layers.Flatten(), keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.5)]
    elif cfg.head == "gap":
        head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.3)]
    else:
        raise ValueError(f"head must be 'flatten' or 'gap'. Received: {cfg.head!r}")
    model = keras.Sequential(
        [keras.Input((cfg.image_size, cfg.image_size, 3)), base, *head,
         keras.layers.Dense(units, activation=activation, name="predictions")],
        name=f"vgg16_{cfg.head}_{cfg.output}",
    )
    return model, base


def _compile(model, cfg, lr):
    loss = "binary_crossentropy" if cfg.output == "sigmoid" else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])


class GradCAMImages(keras.callbacks.Callback):
    """Logs Grad-CAM overlays of fixed validation images to TensorBoard at the end of each epoch.

    The explanation follows the training: kerasxai's probe shares the model's weights.
    """

    def __init__(self, log_dir, display, x):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "gradcam"))
        self.display, self.x = display, x

    def on_epoch_end(self, epoch, logs=None):
        import kerasxai

        maps = kerasxai.gradcam(self.model, self.x)
        images = np.stack([kerasxai.overlay(d, m) for d, m in zip(self.display, maps)])
        with self.writer.as_default():
            tf.summary.image("gradcam_overlays", images, step=epoch, max_outputs=len(images))
        self.writer.flush()


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- figures


def _curves_figure(history):
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            values = history.get(prefix + key, [])
            ax.plot(range(1, len(values) + 1), values, style, label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    return fig


def _confusion_figure(matrix, names):
    fig = Figure(figsize=(3.8, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def _predict_classes(model, ds):
    probs = model.predict(ds, verbose=0)
    if probs.shape[-1] == 1:
        return (probs[:, 0] > 0.5).astype(np.int32), np.stack([1 - probs[:, 0], probs[:, 0]], 1)
    return probs.argmax(axis=1).astype(np.int32), probs


# --------------------------------------------------------------------------- run


def train(cfg: Config) -> dict:
    """Runs the experiment described by ``cfg``; returns the summary (also in ``OUT/summary.json``).

    Example:
        >>> summary = train(Config(data_dir="PetImages", out="runs/vgg16"))  # doctest: +SKIP
    """
    import kerasxai
    from kerasxai.plot import plot_explanations

    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    paths, labels, names = find_files(cfg.data_dir)
    good, bad = check_files(paths)
    with open(os.path.join(cfg.out, "bad_files.txt"), "w") as fh:
        fh.write(f"# {len(bad)} of {len(paths)} files could not be decoded and were skipped\n")
        for path, reason in bad:
            fh.write(f"{path}\t{reason}\n")
    if cfg.verbose:
        print(f"{len(paths)} files in {len(names)} classes {names}; {len(bad)} unreadable, skipped "
              f"(listed in {os.path.join(cfg.out, 'bad_files.txt')})")
    paths = [p for p, ok in zip(paths, good) if ok]
    labels = labels[good]
    order = np.random.default_rng(cfg.seed).permutation(len(paths))
    n_val = max(1, int(round(len(paths) * cfg.val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    pick = lambda idx: ([paths[i] for i in idx], labels[idx])  # noqa: E731

    preprocess = keras.applications.vgg16.preprocess_input
    train_ds = make_dataset(*pick(train_idx), cfg.image_size, preprocess, cfg.batch_size, cfg.seed)
    val_ds = make_dataset(*pick(val_idx), cfg.image_size, preprocess, cfg.batch_size)

    model, base = build_model(cfg, len(names))
    _compile(model, cfg, cfg.learning_rate)
    shown = val_idx[: min(4, len(val_idx))]
    display = load_display([paths[i] for i in shown], cfg.image_size)
    x_shown = preprocess(display.astype(np.float32))
    checkpoint = os.path.join(cfg.out, "best.keras")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience,
                                      restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_accuracy", mode="max", save_best_only=True),
        keras.callbacks.CSVLogger(os.path.join(cfg.out, "log.csv"), append=True),
    ]
    if _has_tensorboard():
        callbacks += [
            keras.callbacks.TensorBoard(os.path.join(cfg.out, "tensorboard")),
            GradCAMImages(os.path.join(cfg.out, "tensorboard"), display, x_shown),
        ]
    elif cfg.verbose:
        print("TensorBoard is not installed (pip install tensorboard, or kerasxai[train]): no TensorBoard logs.")
    history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks,
                        verbose=cfg.verbose, shuffle=False).history  # the dataset shuffles itself
    if cfg.fine_tune_epochs > 0:  # phase 2: unfreeze the last conv block at a low learning rate
        base.trainable = True
        for layer in base.layers:
            layer.trainable = layer.name.startswith("block5")
        _compile(model, cfg, cfg.fine_tune_lr)
        more = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs + cfg.fine_tune_epochs,
                         initial_epoch=len(history["loss"]), callbacks=callbacks, verbose=cfg.verbose,
                         shuffle=False).history
        history = {k: history.get(k, []) + more.get(k, []) for k in set(history) | set(more)}

    # Evaluation of the best model, reloaded as a user would (safe mode on).
    best = keras.models.load_model(checkpoint, safe_mode=True)
    true = labels[val_idx]
    predicted, probs = _predict_classes(best, val_ds)
    accuracy = float((predicted == true).mean())
    matrix = np.zeros((len(names), len(names)), np.int64)
    np.add.at(matrix, (true, predicted), 1)

    _curves_figure(history).savefig(os.path.join(cfg.out, "curves.png"), dpi=90)
    _confusion_figure(matrix, names).savefig(os.path.join(cfg.out, "confusion.png"), dpi=90)
    wrong = np.flatnonzero(predicted != true)[:6]
    if len(wrong):
        w_display = load_display([paths[val_idx[i]] for i in wrong], cfg.image_size)
        w_maps = kerasxai.explain(best, preprocess(w_display.astype(np.float32)), methods=("saliency", "gradcam"))
        titles = [f"true {names[true[i]]}, said {names[predicted[i]]} ({probs[i].max():.0%})" for i in wrong]
        plot_explanations(w_display, w_maps, titles).savefig(os.path.join(cfg.out, "misclassified.png"), dpi=80)
    maps = kerasxai.explain(best, x_shown, methods=("saliency", "gradcam"))
    titles = [f"{names[predicted[i]]}: {probs[i].max():.0%} (true {names[true[i]]})" for i in range(len(shown))]
    plot_explanations(display, maps, titles).savefig(os.path.join(cfg.out, "explanations.png"), dpi=80)

    summary = {
        "classes": names,
        "files": len(good),
        "unreadable_files": len(bad),
        "train_images": len(train_idx),
        "validation_images": len(val_idx),
        "epochs_run": len(history.get("loss", [])),
        "best_val_accuracy": float(max(history.get("val_accuracy", [0]))),
        "validation_accuracy": accuracy,
        "confusion_matrix": matrix.tolist(),
        "checkpoint": checkpoint,
        "seconds": round(time.perf_counter() - start, 1),
        "config": dataclasses.asdict(cfg),
    }
    with open(os.path.join(cfg.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    if cfg.verbose:
        print(f"\nValidation accuracy {accuracy:.1%} on {len(val_idx)} held-out images "
              f"({summary['epochs_run']} epochs, {summary['seconds']:.0f} s).")
        print(f"Confusion matrix (rows true {names}):\n{matrix}")
        print(f"Best model: {checkpoint}; figures and logs in {cfg.out}")
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kerasxai train", description="VGG16 transfer learning on a two-folder image set, then explanations.")
    p.add_argument("--data-dir", required=True, help="PetImages/ (Cat/, Dog/) or a flat folder of cat.N.jpg, dog.N.jpg")
    p.add_argument("--out", required=True, help="run folder for the checkpoint, logs and figures")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val-fraction", type=float, default=6000 / 25000)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="imagenet", help="'imagenet' (download) or 'none' (offline, random)")
    p.add_argument("--head", choices=("flatten", "gap"), default="flatten")
    p.add_argument("--output", choices=("sigmoid", "softmax"), default="sigmoid")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--fine-tune-epochs", type=int, default=0, help="second phase: unfreeze block5 for this many epochs")
    p.add_argument("--fine-tune-lr", type=float, default=1e-5)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None):
    args = vars(parser().parse_args(argv))
    args["verbose"] = 0 if args.pop("quiet") else 1
    train(Config(**args))


if __name__ == "__main__":
    main()
