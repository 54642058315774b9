"""The run folder of a folder/data-set explanation: its contract, resuming, and the writer thread.

A run folder holds::

    run.json            what was run: model, weights, methods, layer, target, class names,
                        kerasxai version, start/finish times (finish null while running or
                        after an interruption), images explained so far, errors, images listed
    predictions.jsonl   one JSON object per image (any order), written after the image's files
    predictions.csv     the same, one flat row per image (rewritten at the end of a run)
    errors.txt          files that could not be read, with the reason (only when there are some)
    maps/<id>.npz       float16 maps, one key per method, at the model's input resolution
    images/<id>.jpg     the photo at its own aspect ratio, long side <= 512
    overlays/<id>_<method>.png   heatmap over that photo, with method @ layer and a colour scale under it
                                 (with ``overlays=True``; see :func:`kerasxai.figures.overlay.overlay_panel`)

An image is done when its row is in ``predictions.jsonl``; rows are written
only after the image's files, so an interrupted run loses at most the batches
still in flight, and resuming (:meth:`RunFolder.open` with ``resume=True``)
keeps every complete row once and redoes the rest. Writing happens on a
background thread (:class:`Writer`) behind a bounded queue, so the model never
waits for PNG or npz encoding and memory stays bounded.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import queue
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from kerasxai import _warn
from kerasxai.figures.overlay import overlay_panel
from kerasxai.folder import kinds
from kerasxai.folder.report import write_report
from kerasxai.methods.table import where as method_where

RUN_JSON = "run.json"
PREDICTIONS = "predictions.jsonl"
CSV_FILE = "predictions.csv"
ERRORS = "errors.txt"
SUBFOLDERS = ("maps", "images", "overlays")
OURS = (RUN_JSON, PREDICTIONS, CSV_FILE, ERRORS) + SUBFOLDERS
# run.json keys that must match for a run to be resumed
RESUME_KEYS = ("model", "weights", "methods", "layer", "target", "class_names", "overlays", "display_images")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def _write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2)
    os.replace(tmp, path)


def _whole(row) -> bool:
    """Whether a line of ``predictions.jsonl`` is a row as a run writes it (a hand-edited or damaged one
    is not: a resumed run redoes its image, and the report names the line)."""
    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
        return False
    methods, top = row.get("methods", {}), row.get("top_k", [])
    return (isinstance(methods, dict) and all(isinstance(v, dict) for v in methods.values())
            and isinstance(top, list) and all(isinstance(t, dict) for t in top)
            and isinstance(row.get("overlays") or {}, dict))


def read_predictions(run_dir):
    """The rows of ``RUN/predictions.jsonl`` (complete, undamaged lines only), in file order.

    Examples:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> _ = open(os.path.join(run, PREDICTIONS), "w").write('{"id": "a"}\\n[1, 2]\\n{"id": "b"')
        >>> [row["id"] for row in read_predictions(run)]  # not a row: a list, the cut last line
        ['a']
    """
    rows = []
    path = os.path.join(run_dir, PREDICTIONS)
    if not os.path.exists(path):
        return rows
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # cut off by an interruption
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if _whole(row):
                rows.append(row)
    return rows


def _files_of(row):
    files = [row.get("maps"), row.get("image")] + list((row.get("overlays") or {}).values())
    return [f for f in files if f]


class RunFolder:
    """One run folder: created fresh, or reopened to resume. See the module docstring.

    Use :meth:`open`; ``done`` holds the ids already explained.

    Examples:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "run")
        >>> run = RunFolder.open(path, {"started": now(), "methods": ["gradcam"]})
        >>> sorted(os.listdir(path))
        ['images', 'maps', 'run.json']
        >>> RunFolder.open(path, {"started": now(), "methods": ["gradcam"]})
        Traceback (most recent call last):
        ...
        ValueError: '...' already holds a kerasxai run (unfinished, 0 rows): pass resume=True (--resume) ...
        >>> RunFolder.open(path, {"started": now(), "methods": ["gradcam"]}, resume=True).done
        set()
    """

    def __init__(self, path, meta, done):
        self.path = path
        self.meta = meta
        self.done = done

    @classmethod
    def open(cls, path, meta, *, resume=False, force=False):
        """Creates ``path`` (or reopens it with ``resume=True``) for a run described by ``meta``.

        Refuses, with a ``ValueError`` that says what to do: a folder that holds
        a kerasxai run without ``resume``; resuming with other settings; a
        non-empty folder that is not a kerasxai run without ``force``. Nothing
        already in the folder is deleted or overwritten, except rows and files
        of images that were not finished (they are redone), and, in a run with a
        ``Segmentation`` target, rows written before runs recorded whether the
        image's region is empty (``"nothing"``): those are redone too, so that an
        empty region is never reported as an unexplained flat map.
        """
        path = os.fspath(path)
        entries = cls.check(path, resume=resume, force=force)
        done = set()
        if RUN_JSON in entries:
            with open(os.path.join(path, RUN_JSON)) as fh:
                old = json.load(fh)
            rows = read_predictions(path)
            changed = [k for k in RESUME_KEYS if old.get(k) != meta.get(k)]
            if changed:
                diffs = "; ".join(f"{k}: run has {old.get(k)!r}, asked {meta.get(k)!r}" for k in changed)
                raise ValueError(f"cannot resume the run in '{path}' with other settings ({diffs}). "
                                 "Use the same settings, or another output folder.")
            kept = []
            regions = kinds.is_segmentation(meta.get("target"))
            for row in rows:
                if row.get("error") or row.get("id") in done:
                    continue  # unreadable files are retried; a row is never kept twice
                if regions and "nothing" not in row:
                    continue  # written before rows said whether the region is empty: its flat map's cause is unknown
                if all(os.path.exists(os.path.join(path, f)) for f in _files_of(row)):
                    kept.append(row)
                    done.add(row["id"])
            tmp = os.path.join(path, PREDICTIONS + ".tmp")
            with open(tmp, "w") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in kept)
            os.replace(tmp, os.path.join(path, PREDICTIONS))
            meta = {**meta, "started": old.get("started", meta["started"]), "finished": None, "images": len(kept),
                    "errors": 0}
        os.makedirs(path, exist_ok=True)
        for sub in SUBFOLDERS:
            if sub != "overlays" or meta.get("overlays"):
                os.makedirs(os.path.join(path, sub), exist_ok=True)
        run = cls(path, meta, done)
        run.save_meta()
        return run

    @staticmethod
    def check(path, *, resume=False, force=False):
        """Raises the ``ValueError`` :meth:`open` would for ``path`` (before any work); returns its entries."""
        path = os.fspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"output folder '{path}' is a file: choose a folder.")
        entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
        if RUN_JSON in entries:
            kinds.refuse_other_kind(path, kinds.EXPLANATION, "resume an explanation run" if resume
                                    else "write an explanation run")
            if not resume:
                with open(os.path.join(path, RUN_JSON)) as fh:
                    state = "finished" if json.load(fh).get("finished") else "unfinished"
                rows = len(read_predictions(path))
                raise ValueError(
                    f"'{path}' already holds a kerasxai run ({state}, {rows} rows): pass resume=True "
                    "(--resume) to continue it, or choose another output folder.")
        elif entries:
            if not force:
                raise ValueError(
                    f"output folder '{path}' is not empty and holds no kerasxai run (no {RUN_JSON}): choose a new "
                    "or empty folder, or pass force=True (--force) to add the run's files to it.")
            clash = [e for e in entries if e in OURS]
            if clash:
                raise ValueError(f"output folder '{path}' already has {', '.join(clash)}, which a run would "
                                 "overwrite: choose a new or empty folder.")
        return entries

    def save_meta(self):
        self.meta = {"kind": kinds.EXPLANATION, **self.meta}
        _write_json_atomic(os.path.join(self.path, RUN_JSON), self.meta)

    def finish(self, interrupted=False):
        """Rewrites the CSV and ``errors.txt`` from the rows, and the counts and finish time in run.json.

        Returns the rows.
        """
        rows = read_predictions(self.path)
        good = [r for r in rows if not r.get("error")]
        bad = [r for r in rows if r.get("error")]
        write_csv(os.path.join(self.path, CSV_FILE), rows, self.meta.get("methods", []))
        errors = os.path.join(self.path, ERRORS)
        if bad:
            with open(errors, "w") as fh:
                fh.writelines(f"{r['file']}\t{r['error']}\n" for r in bad)
        elif os.path.exists(errors):
            os.remove(errors)
        self.meta.update(images=len(good), errors=len(bad), finished=None if interrupted else now())
        self.save_meta()
        self.write_report()
        return rows

    def write_report(self):
        """(Re)writes ``report.html``: the page to browse the run, also after an interrupted run.

        What the page finds wrong (rows that could not be read, files missing) it shows at its top;
        the run's own warnings already named them, so they are not warned twice here. A page that
        cannot be written costs a warning, never the run.
        """
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                write_report(self.path)
        except Exception as err:  # the run's files are written; the page can be made later
            warnings.warn(f"kerasxai: report.html could not be written ({err}); run `kerasxai report {self.path}` "
                          "to make it.", RuntimeWarning, stacklevel=_warn.caller_stacklevel())


def write_csv(path, rows, methods):
    """One row per image: id, file, label, top class and probability, target, and per-method statistics.

    Examples:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "p.csv")
        >>> write_csv(path, [{"id": "a", "top_k": [{"class": 3, "name": "cat", "probability": 0.9}],
        ...                   "methods": {"gradcam": {"flat": False, "max": 1.0, "mean": 0.2}}}], ["gradcam"])
        >>> open(path).read().splitlines()[1]
        'a,,,3,cat,0.9,,,,,False,1.0,0.2'
    """
    columns = ["id", "file", "label", "top_class", "top_name", "top_probability", "target", "target_name",
               "layer", "error"]
    for m in methods:
        columns += [f"{m}_flat", f"{m}_max", f"{m}_mean"]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for r in rows:
            top = (r.get("top_k") or [{}])[0]
            line = [r.get("id"), r.get("file"), r.get("label"), top.get("class"), top.get("name"),
                    top.get("probability"), r.get("target"), r.get("target_name"), r.get("layer"), r.get("error")]
            for m in methods:
                s = (r.get("methods") or {}).get(m, {})
                line += [s.get("flat"), s.get("max"), s.get("mean")]
            out.writerow(["" if v is None else v for v in line])


def _finite(value, digits=6):
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


class Writer:
    """Writes explained batches into a :class:`RunFolder` on a background thread.

    ``put`` blocks when ``depth`` batches are waiting (bounded memory) and
    re-raises an error of the thread (a full disk, say) in the caller.
    ``close`` writes what is queued and stops the thread.
    """

    def __init__(self, run: RunFolder, *, layer=None, overlays=False, depth=3, threads=None):
        self.run = run
        # per-image files are encoded by a few threads (PIL and zlib release the GIL): a GPU can outrun one
        self.pool = ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1), thread_name_prefix="kerasxai-write")
        self.layer = layer
        self.overlays = overlays
        self.queue = queue.Queue(maxsize=depth)
        self.error = None
        self.written = 0
        self._fh = open(os.path.join(run.path, PREDICTIONS), "a")
        self._thread = threading.Thread(target=self._loop, name="kerasxai-writer", daemon=True)
        self._thread.start()

    def put(self, batch):
        """Queues one batch (see :meth:`write_batch` for its keys)."""
        while True:
            if self.error is not None:
                raise RuntimeError(f"writing the run folder failed: {self.error}") from self.error
            try:
                self.queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self):
        """Writes the queued batches, then stops the thread; re-raises a writing error."""
        while self._thread.is_alive():  # after a writing error the thread only drains, so this ends
            try:
                self.queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self._thread.join()
        self.pool.shutdown()
        self._fh.close()
        if self.error is not None:
            raise RuntimeError(f"writing the run folder failed: {self.error}") from self.error

    def _loop(self):
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            if self.error is not None:
                continue  # drain without writing after a failure
            try:
                self.write_batch(batch)
            except Exception as err:  # surfaced by put/close in the computing thread
                self.error = err

    def write_batch(self, batch):
        """Writes one batch's files, then its rows.

        ``batch``: ``ids``, ``files``, ``labels`` (lists); ``errors`` (list of
        None or message); ``sizes`` ``(B, 2)``; ``jpegs`` (display JPEG bytes or
        b""); ``maps`` {method: ``(B, H, W)``}; ``top_k`` (per image a list of
        ``(class, name, probability)``); ``flat`` {method: ``(B,)`` bool};
        ``targets``; ``target_names``; optionally ``regions`` ``(B, h, w)`` bool (a segmentation
        target's region per image, outlined on the overlays) and ``nothing`` ``(B,)`` bool (True where
        that region holds nothing to explain).
        """
        def one(i):
            return self._error_row(batch, i) if batch["errors"][i] else self._write_image(batch, i)

        rows = list(self.pool.map(one, range(len(batch["ids"]))))
        self._fh.write("".join(json.dumps(row) + "\n" for row in rows))
        self._fh.flush()
        self.written += len(rows)

    def _error_row(self, batch, i):
        return {"id": batch["ids"][i], "file": batch["files"][i], "size": None, "label": batch["labels"][i],
                "top_k": [], "target": None, "target_name": None, "layer": self.layer, "maps": None,
                "image": None, "methods": {}, "error": batch["errors"][i]}

    def _write_image(self, batch, i):
        image_id, path = batch["ids"][i], self.run.path
        maps = {m: np.asarray(v[i], np.float32) for m, v in batch["maps"].items()}
        np.savez(os.path.join(path, "maps", image_id + ".npz"), **{m: v.astype(np.float16) for m, v in maps.items()})
        stats = {}
        for m, v in maps.items():
            flat = bool(batch["flat"][m][i])
            stats[m] = {"flat": flat, "max": _finite(v.max()), "mean": _finite(v.mean())}
        jpeg = batch["jpegs"][i]
        image = None
        if jpeg:
            image = f"images/{image_id}.jpg"
            with open(os.path.join(path, image), "wb") as fh:
                fh.write(jpeg)
        row = {"id": image_id, "file": batch["files"][i], "size": [int(s) for s in batch["sizes"][i]],
               "label": batch["labels"][i],
               "top_k": [{"class": int(c), "name": n, "probability": _finite(p)} for c, n, p in batch["top_k"][i]],
               "target": None if batch["targets"][i] is None else int(batch["targets"][i]),
               "target_name": batch["target_names"][i], "layer": self.layer,
               "maps": f"maps/{image_id}.npz", "image": image}
        # the target's region is empty here (a segmentation class no pixel is predicted as): maps of zeros
        row["nothing"] = bool(batch.get("nothing") is not None and batch["nothing"][i])
        if self.overlays:
            photo = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
            regions = batch.get("regions")
            row["overlays"] = {}
            for m, v in maps.items():
                name = f"overlays/{image_id}_{m}.png"
                drawn = overlay_panel(photo, v, method=m, layer=method_where(m, self.layer),
                                      flat=stats[m]["flat"], region=None if regions is None else regions[i])
                Image.fromarray(drawn).save(os.path.join(path, name), compress_level=1)
                row["overlays"][m] = name
        row["methods"] = stats
        row["error"] = None
        return row
