"""``train(cfg)``: data, model, the training phases (resumable), then the report."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time

import keras
import numpy as np

from kerasxai.data.images import preprocess_function
from kerasxai.train import explaining
from kerasxai.train.callbacks import EpochEndGuard, GradCAMImages
from kerasxai.train.config import Config, TrainError, resolve, resume_command
from kerasxai.train.data import check_files, files_digest, renamed_formats, scan_data, split
from kerasxai.train.model import (build_model, cam_resolution, compile_model, compute_features, head_model,
                                  set_trainable)
from kerasxai.train.pipeline import EpochOrder, feature_dataset, image_dataset
from kerasxai.train.report import write_report
from kerasxai.train.checkpoints import Progress, RunFolder, load_progress, save_weights

TRAINABLE = {"head": "head", "all": "all", "fine-tune": "last block"}


@dataclasses.dataclass
class RunData:
    """The usable images of a run, their split, and the validation images shown in the figures."""

    paths: list
    labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    preprocess: object
    shown_idx: np.ndarray
    display: np.ndarray
    x_shown: np.ndarray

    def pick(self, idx):
        return [self.paths[i] for i in idx], self.labels[idx]


def warn(message: str):
    """A warning the user must see, whatever ``verbose`` says."""
    print(f"kerasxai: warning: {message}", file=sys.stderr, flush=True)


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _describe_model(settings, cfg, base) -> str:
    layer, (h, w) = cam_resolution(base)
    if settings.base == "vgg16" and settings.pretrained:
        source = "ImageNet weights" if cfg.weights == "imagenet" else f"the weights in {cfg.weights}"
        what = f"VGG16 with {source}, " + ("frozen" if settings.freeze_base else "trained whole")
    elif settings.base == "vgg16":
        what = "VGG16 with RANDOM weights (--weights none), " + (
            "FROZEN" if settings.freeze_base else "trained from scratch (all layers)")
    else:
        what = "a small CNN with RANDOM initial weights (--weights none), " + (
            "FROZEN" if settings.freeze_base else "trained from scratch (all layers)")
    return (f"Model: {what}; {settings.head} head, {cfg.output} output, {cfg.image_size}x{cfg.image_size} "
            f"inputs; Grad-CAM maps come from {base.name}/{layer} at {h}x{w}.")


def uses_feature_cache(cfg: Config, phase: str) -> bool:
    """The head trains on the frozen base's features computed once: base frozen, images the same each epoch.

    Examples:
        >>> uses_feature_cache(Config("d", "o"), "head"), uses_feature_cache(Config("d", "o", augment=True), "head")
        (True, False)
    """
    return phase == "head" and cfg.feature_cache and not cfg.augment


def _plan(cfg, settings):
    phases = [("head" if settings.freeze_base else "all", cfg.epochs, settings.learning_rate)]
    if cfg.fine_tune_epochs:
        phases.append(("fine-tune", cfg.fine_tune_epochs, cfg.fine_tune_lr))
    return phases


def _fit_phases(cfg, settings, folder, model, base, data, extra_callbacks, say):
    """Runs (or continues) every training phase; returns the feature-caching seconds per phase."""
    paths, labels, preprocess = data.paths, data.labels, data.preprocess
    train_idx, val_idx = data.train_idx, data.val_idx
    state = folder.state
    pick = data.pick
    order = EpochOrder(len(train_idx), cfg.seed, cfg.augment)
    load_saved = cfg.resume
    caching = {}
    tensorboard = []
    if _has_tensorboard():
        tensorboard = [keras.callbacks.TensorBoard(folder.file("tensorboard"), write_graph=False),
                       GradCAMImages(folder.file("tensorboard"), model, data.display, data.x_shown)]
    else:
        say("TensorBoard is not installed (pip install tensorboard, or kerasxai[train]): no TensorBoard logs.")
    for index, (name, n_epochs, lr) in enumerate(_plan(cfg, settings)):
        if index < len(state["phases"]) and state["phases"][index]["done"]:
            continue
        if index == len(state["phases"]):
            state["phases"].append({"name": name, "first_epoch": folder.epochs_done() + 1, "epochs": n_epochs,
                                    "done": False, "stopped_early": None})
            state["phase_best"], state["wait"] = None, 0
        phase = state["phases"][index]
        phase["epochs"] = n_epochs  # a resumed run may ask for more (or fewer) epochs in the current phase
        begin = phase["first_epoch"] - 1
        done = folder.epochs_done() - begin
        set_trainable(model, base, TRAINABLE[name], settings.last_block)
        fast = uses_feature_cache(cfg, name)
        compile_model(model, cfg.output, lr)
        fit_model = head_model(model, base) if fast else model
        if fast:
            compile_model(fit_model, cfg.output, lr)
            model.optimizer.build(model.trainable_variables)  # best.keras then reloads without a warning
        if load_saved:
            load_progress(folder, model, fit_model, phase_has_epochs=done > 0)
            load_saved = False
        if done < phase["epochs"] and not phase["stopped_early"]:
            what = {"head": f"the head on the frozen {base.name} base",
                    "all": "every layer", "fine-tune": f"the head and {settings.last_block} of {base.name}"}[name]
            say(f"\nPhase {index + 1} ({name}): training {what} at learning rate {lr:g}, epochs "
                f"{begin + done + 1}-{begin + phase['epochs']}" + (" (resumed)" if done else "") + ".")
            if fast:
                started = time.perf_counter()
                bar = keras.utils.Progbar(len(paths), unit_name="image") if cfg.verbose else None
                feats = {}
                for part, idx in (("train", train_idx), ("val", val_idx)):
                    ds = image_dataset(*pick(idx), cfg.image_size, preprocess, cfg.batch_size)
                    offset = len(train_idx) if part == "val" else 0
                    feats[part] = compute_features(base, ds, len(idx), folder.file("cache", f"{part}.npy"),
                                                   bar and (lambda k, o=offset: bar.update(o + k)))
                caching[name] = round(time.perf_counter() - started, 2)
                say(f"Features of the frozen base computed once for {len(paths)} images in {caching[name]:.1f} s "
                    f"({folder.file('cache')}); each epoch now trains the head on them.")
                train_ds = feature_dataset(feats["train"], labels[train_idx], cfg.batch_size, order)
                val_ds = feature_dataset(feats["val"], labels[val_idx], cfg.batch_size)
            else:
                train_ds = image_dataset(*pick(train_idx), cfg.image_size, preprocess, cfg.batch_size, order)
                val_ds = image_dataset(*pick(val_idx), cfg.image_size, preprocess, cfg.batch_size)
            guard = EpochEndGuard()
            callbacks = [order, guard.opening, Progress(folder, model, name, settings.patience), *tensorboard,
                         guard.closing, *extra_callbacks]
            try:
                fit_model.fit(train_ds, validation_data=val_ds, initial_epoch=begin + done,
                              epochs=begin + phase["epochs"], callbacks=callbacks, verbose=cfg.verbose,
                              shuffle=False)
            finally:
                guard.release()
                for cb in tensorboard[:1]:  # close the writers, also on Ctrl-C, so no event is lost
                    try:
                        cb.on_train_end()
                    except Exception:  # noqa: BLE001 - writers may not have been opened
                        pass
            if phase["stopped_early"]:
                say(f"Early stopping after epoch {phase['stopped_early']}: no better validation accuracy "
                    f"for {settings.patience} epoch(s).")
        phase["done"] = True
        if folder.best_weights is None:  # resumed after the best epoch: it is on disk only
            folder.best_weights = keras.models.load_model(folder.file("best.keras"), safe_mode=True).get_weights()
        model.set_weights(folder.best_weights)  # go on (or end) from the best epoch, as restore_best_weights does
        start_name = f"phase{index + 2}-start.weights.npz"
        save_weights(model, folder.file("resume", start_name))
        state["saved"] = {"weights": start_name, "optimizer": None}
        folder.save_state()
        shutil.rmtree(folder.file("cache"), ignore_errors=True)
    return caching


def _interrupted(folder, cfg, during: str):
    state = folder.state or {}
    rows = state.get("rows", [])
    if not rows:
        message = (f"kerasxai: interrupted {during} before the first epoch ended: nothing was saved"
                   + (f" ('{cfg.out}' removed)." if folder.discard() else "."))
    else:
        best = state["best"]
        message = (f"kerasxai: interrupted {during}: epochs 1-{len(rows)} are saved in '{cfg.out}' (best.keras: "
                   f"epoch {best['epoch']}, validation accuracy {best['val_accuracy']:.1%}); resume with: "
                   f"{resume_command(cfg)}")
    print(message, file=sys.stderr, flush=True)


def train(cfg: Config, callbacks=()) -> dict:
    """Runs the experiment described by ``cfg``; returns the summary (also in ``OUT/summary.json``).

    ``callbacks`` are Keras callbacks added to every ``fit``. Mistakes in the
    data or the options raise ``TrainError`` (the command prints one line);
    Ctrl-C prints what was saved and the command that resumes, then re-raises.

    Examples:
        >>> summary = train(Config(data_dir="PetImages", out="runs/vgg16"))  # doctest: +SKIP
    """
    try:
        return _train(cfg, list(callbacks))
    except KeyboardInterrupt as interrupt:
        if not getattr(interrupt, "reported", False):
            print("kerasxai: interrupted before training started: nothing was saved.", file=sys.stderr, flush=True)
        raise


def _train(cfg: Config, callbacks: list) -> dict:
    started = time.perf_counter()
    say = print if cfg.verbose else (lambda *a, **k: None)
    settings = resolve(cfg)
    out, data_dir = os.path.abspath(cfg.out), os.path.abspath(cfg.data_dir)
    if out == data_dir or out.startswith(data_dir + os.sep):
        raise TrainError(f"--out '{cfg.out}' is inside --data-dir '{cfg.data_dir}': the run's figures would "
                         "become training images; put the run folder elsewhere")
    folder = RunFolder(cfg.out, cfg.resume, cfg.overwrite)
    scan = scan_data(cfg.data_dir, cfg.classes)
    for line in scan.describe():
        say(line)
    good, bad, formats = check_files(scan.paths)
    paths = [p for p, ok in zip(scan.paths, good) if ok]
    labels, names = scan.labels[good], scan.class_names
    renamed = renamed_formats(paths, formats)
    say(f"Decoded all {len(scan.paths)} image files: {len(bad)} cannot be decoded and are skipped (listed in "
        f"{folder.file('bad_files.txt')})" + ("; decoded whatever their name says: " + ", ".join(
            f"{n} {k}" for k, n in renamed.items()) if renamed else "") + ".")
    train_idx, val_idx = split(labels, cfg.val_fraction, cfg.seed, names)
    say(f"Split: {len(train_idx)} training and {len(val_idx)} validation images (stratified, seed {cfg.seed}).")

    keras.utils.set_random_seed(cfg.seed)
    model, base = build_model(settings, cfg.image_size, cfg.output, len(names), cfg.weights)
    say(_describe_model(settings, cfg, base))
    if not settings.pretrained and settings.freeze_base:
        warn("the base is random AND frozen: the head learns from random features, so expect chance-level "
             "accuracy; this only tests the pipeline or measures speed")
    preprocess = preprocess_function("auto", model)
    shown = np.concatenate([val_idx[labels[val_idx] == c][:2] for c in range(len(names))])[:6]
    display, x_shown = explaining.load(model, [paths[i] for i in shown])
    data = RunData(paths, labels, train_idx, val_idx, preprocess, shown, display, x_shown)

    folder.start(cfg, files_digest(scan.root, paths, labels), len(paths))
    during = "during training"
    try:
        with open(folder.file("bad_files.txt"), "w") as fh:
            fh.write(f"# {len(bad)} of {len(scan.paths)} image files cannot be decoded and were skipped "
                     "(none was changed)\n")
            for path, reason in bad:
                fh.write(f"{path}\t{reason}\n")
        caching = _fit_phases(cfg, settings, folder, model, base, data, callbacks, say)
        during = "while writing the figures (training had finished)"
        summary = write_report(cfg, settings, folder, scan, bad, renamed, data, caching, started, say)
    except KeyboardInterrupt as interrupt:
        _interrupted(folder, cfg, during)
        interrupt.reported = True
        raise
    except BaseException:
        folder.discard()
        raise
    folder.finish()
    return summary
