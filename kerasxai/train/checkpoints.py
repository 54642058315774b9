"""A run folder: refused when it holds another run, replaced with ``--overwrite``, continued with ``--resume``.

After every epoch, ``Progress`` (a Keras callback) writes what a resumed run
needs: the model's weights and the optimizer's state (``resume/``), the
epoch count, early-stopping and best-model state (``resume/state.json``) and
``log.csv`` (rewritten from that state, so no row is ever duplicated). It
also keeps ``best.keras``: the whole model at the best epoch so far, judged
by validation accuracy, ties broken by validation loss. This plays the part
of ``keras.callbacks.BackupAndRestore``, which knows neither two training
phases nor a head trained on cached features.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from kerasxai.folder import kinds
from kerasxai.train.config import SAME_ON_RESUME, Config, TrainError

PRODUCTS = ("run.json", "best.keras", "log.csv", "bad_files.txt", "summary.json", "curves.png", "confusion.png",
            "misclassified.png", "explanations.png", "tensorboard", "resume", "cache")
LOG_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


def _write_atomic(path, text):
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


class RunFolder:
    """Checks ``out`` against ``--resume``/``--overwrite`` now; ``start`` creates or reopens it later.

    Examples:
        >>> RunFolder("/no/such/run", resume=True, overwrite=False)
        Traceback (most recent call last):
        ...
        kerasxai.train.config.TrainError: nothing to resume: '/no/such/run' does not exist
    """

    def __init__(self, out: str, resume: bool, overwrite: bool):
        self.path, self.resume, self.overwrite = out, resume, overwrite
        self.existed = os.path.isdir(out) and bool(os.listdir(out))
        if os.path.exists(out) and not os.path.isdir(out):
            raise TrainError(f"--out '{out}' is a file, not a folder")
        if self.existed:  # an explanation run's run.json must never be replaced by a training run's
            try:
                kinds.refuse_other_kind(out, kinds.TRAINING, "resume a training run" if resume
                                        else "overwrite it with a training run")
            except ValueError as err:
                raise TrainError(str(err)) from None
        state = self.file("resume", "state.json")
        if resume:
            if not os.path.exists(out):
                raise TrainError(f"nothing to resume: '{out}' does not exist")
            if os.path.exists(self.file("summary.json")) and not os.path.exists(state):
                raise TrainError(f"the run in '{out}' has finished (summary.json): nothing to resume; use "
                                 "--overwrite to train again, or another --out")
            if not os.path.exists(state):
                raise TrainError(f"nothing to resume in '{out}': no epoch of a run was completed there")
        elif self.existed:
            if not overwrite:
                shown = ", ".join(sorted(os.listdir(out))[:4])
                raise TrainError(f"'{out}' already holds files ({shown}): add --resume to continue its run, "
                                 "--overwrite to replace it, or choose another --out")
            if not os.path.exists(self.file("run.json")):
                raise TrainError(f"'{out}' is not a kerasxai run folder (no run.json): --overwrite only replaces "
                                 "runs; choose another --out")
        self.created = False
        self.state = None
        self.best_weights = None  # those of best.keras, once this process has saved it

    def file(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    def start(self, cfg: Config, digest: str, n_files: int) -> dict:
        """Creates the folder (replacing an old run's files with ``--overwrite``) or loads the state to resume."""
        if self.resume:
            with open(self.file("resume", "state.json")) as fh:
                state = json.load(fh)
            old = state["config"]
            changed = [k for k in SAME_ON_RESUME if old.get(k) != getattr(cfg, k)]
            if changed:
                was = ", ".join(f"{k}={old.get(k)!r} (now {getattr(cfg, k)!r})" for k in changed)
                raise TrainError(f"--resume needs the options of the run it continues: it had {was}")
            if state["files_digest"] != digest:
                raise TrainError(f"the data changed since the run in '{self.path}' started ({state['n_files']} "
                                 f"usable files then, {n_files} now): resuming would mix training and validation "
                                 "images; start again with --overwrite")
            state["config"] = dataclasses.asdict(cfg)
            self.state = state
            return state
        if self.existed:  # --overwrite: remove only what runs write
            for name in PRODUCTS:
                path = self.file(name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        self.created = not os.path.isdir(self.path)
        os.makedirs(self.file("resume"), exist_ok=True)
        _write_atomic(self.file("run.json"), json.dumps({"kind": kinds.TRAINING, "config": dataclasses.asdict(cfg),
                                                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
        self.state = {"config": dataclasses.asdict(cfg), "files_digest": digest, "n_files": n_files, "rows": [],
                      "phases": [], "best": None, "phase_best": None, "wait": 0}
        return self.state

    def epochs_done(self) -> int:
        return len(self.state["rows"]) if self.state else 0

    def save_state(self):
        _write_atomic(self.file("resume", "state.json"), json.dumps(self.state, indent=1))
        lines = [",".join(LOG_COLUMNS)]
        for row in self.state["rows"]:
            lines.append(",".join("" if row.get(c) is None else str(row[c]) for c in LOG_COLUMNS))
        _write_atomic(self.file("log.csv"), "\n".join(lines) + "\n")

    def discard(self):
        """After a failed or interrupted start with no epoch completed: leave no empty run folder behind."""
        if self.epochs_done() == 0 and not self.resume:
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                for name in ("run.json", "resume", "cache", "log.csv", "bad_files.txt", "tensorboard"):
                    path = self.file(name)
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else (
                        os.path.exists(path) and os.remove(path))
            return True
        return False

    def finish(self):
        """Training is over: drop the resume weights and the feature cache (large), keep the state's record."""
        for name in ("resume", "cache"):
            shutil.rmtree(self.file(name), ignore_errors=True)


def read_log(path) -> list:
    """The rows of a run's ``log.csv`` as dicts of floats (``epoch`` int, ``phase`` str)."""
    rows = []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            rows.append({k: (v if k == "phase" else int(v) if k == "epoch" else float(v) if v else None)
                         for k, v in row.items()})
    return rows


def better(row, best) -> bool:
    """Higher validation accuracy, or the same with lower validation loss."""
    if best is None:
        return True
    if row["val_accuracy"] != best["val_accuracy"]:
        return row["val_accuracy"] > best["val_accuracy"]
    return row["val_loss"] < best["val_loss"]


class Progress(keras.callbacks.Callback):
    """Per epoch: the log row, ``best.keras``, early stopping and the resume state, written together.

    ``full_model`` is what ``best.keras`` and the resume weights hold (with a
    cached-features phase, ``fit`` trains a head model sharing its layers).
    """

    def __init__(self, folder: RunFolder, full_model, phase: str, patience: int):
        super().__init__()
        self.folder, self.full_model, self.phase, self.patience = folder, full_model, phase, patience
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        state, logs = self.folder.state, dict(logs or {})
        lr = logs.get("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        row = {"epoch": epoch + 1, "phase": self.phase, "learning_rate": float(f"{float(lr):.6g}"),
               "seconds": round(time.perf_counter() - self.started, 3),
               **{k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs}}
        if better(row, state["best"]):
            self.full_model.save(self.folder.file("best.keras"))
            self.folder.best_weights = self.full_model.get_weights()
            state["best"] = {k: row[k] for k in ("epoch", "val_accuracy", "val_loss")}
        if better(row, state["phase_best"]):
            state["phase_best"], state["wait"] = {k: row[k] for k in ("epoch", "val_accuracy", "val_loss")}, 0
        else:
            state["wait"] += 1
            if state["wait"] >= self.patience:
                self.model.stop_training = True
                state["phases"][-1]["stopped_early"] = epoch + 1
        saved = {"weights": f"epoch{epoch + 1}.weights.npz", "optimizer": f"epoch{epoch + 1}.optimizer.npz"}
        save_weights(self.full_model, self.folder.file("resume", saved["weights"]))
        store = {}
        self.model.optimizer.save_own_variables(store)
        arrays = {f"optimizer/{k}": v for k, v in store.items()}
        arrays.update({f"seed/{i}": v.numpy() for i, v in enumerate(_seed_states(self.full_model))})
        np.savez(self.folder.file("resume", saved["optimizer"]), **arrays)
        previous = state.get("saved") or {}
        state["rows"].append(row)
        state["saved"] = saved
        self.folder.save_state()  # the state names the files: an interruption leaves a consistent pair
        for name in previous.values():
            if name and name not in saved.values() and os.path.exists(self.folder.file("resume", name)):
                os.remove(self.folder.file("resume", name))


def save_weights(model, path):
    """The model's weights alone (``model.save_weights`` would add a compiled model's optimizer)."""
    np.savez(path, *model.get_weights())


def _load_weights(model, path):
    with np.load(path) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def _seed_states(model) -> list:
    """The states of the model's random seed generators (dropout's): not in ``save_weights``, but a resumed
    run must draw the same dropout masks as an uninterrupted one."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


def load_progress(folder: RunFolder, full_model, fit_model, phase_has_epochs: bool):
    """Puts the saved weights back into ``full_model`` and, mid-phase, the optimizer and dropout seed states."""
    saved = folder.state["saved"]
    _load_weights(full_model, folder.file("resume", saved["weights"]))
    if phase_has_epochs:
        optimizer = fit_model.optimizer
        optimizer.build(fit_model.trainable_variables)
        with np.load(folder.file("resume", saved["optimizer"])) as arrays:
            optimizer.load_own_variables({k.split("/", 1)[1]: arrays[k] for k in arrays.files
                                          if k.startswith("optimizer/")})
            for i, state in enumerate(_seed_states(full_model)):
                state.assign(arrays[f"seed/{i}"])
