"""The two kinds of run folder kerasxai writes, told apart by their ``run.json``.

An *explanation* run (``explain_folder``, ``kerasxai explain``: maps, photos,
``predictions.jsonl``, ``report.html``) and a *training* run (``kerasxai train``:
``best.keras``, ``log.csv``, checkpoints to resume) both keep a ``run.json``; its
``"kind"`` says which, so that a command pointed at the other kind refuses before
it changes anything (``kerasxai train --overwrite`` must not replace an explanation
run's ``run.json``). Folders written before ``"kind"`` existed are recognised by
their keys.

Examples:
    >>> kind_of({"kind": "training"}), kind_of({"methods": ["gradcam"], "listed": 3}), kind_of({"config": {}})
    ('training', 'explanation', 'training')
"""

from __future__ import annotations

import json
import os

EXPLANATION, TRAINING = "explanation", "training"
RUN_JSON = "run.json"
WHAT = {EXPLANATION: "an explanation run (kerasxai explain / explain_folder)",
        TRAINING: "a training run (kerasxai train)"}


def kind_of(meta) -> str | None:
    """The kind of run a ``run.json``'s content describes, or None if it is neither."""
    if not isinstance(meta, dict):
        return None
    if meta.get("kind") in (EXPLANATION, TRAINING):
        return meta["kind"]
    if "methods" in meta and ("listed" in meta or "kerasxai_version" in meta):
        return EXPLANATION
    if isinstance(meta.get("config"), dict):
        return TRAINING
    return None


def is_segmentation(target) -> bool:
    """Whether a ``run.json``'s recorded target is a segmentation target (``{"segmentation": c, "mask": ...}``).

    Examples:
        >>> is_segmentation({"segmentation": 2, "mask": "predicted"}), is_segmentation(3), is_segmentation(None)
        (True, False, False)
    """
    return isinstance(target, dict) and "segmentation" in target


def read_kind(folder) -> str | None:
    """The kind of run in ``folder`` (None: no readable ``run.json``, or one of neither kind)."""
    path = os.path.join(os.fspath(folder), RUN_JSON)
    try:
        with open(path) as fh:
            return kind_of(json.load(fh))
    except (OSError, ValueError):
        return None


def refuse_other_kind(folder, wanted: str, doing: str) -> None:
    """Raises ``ValueError`` if ``folder`` holds a run of the other kind: ``doing`` it there would replace it.

    Examples:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> _ = open(os.path.join(run, "run.json"), "w").write('{"kind": "training"}')
        >>> refuse_other_kind(run, EXPLANATION, "resume an explanation run")
        Traceback (most recent call last):
        ...
        ValueError: '...' holds a training run (kerasxai train), not an explanation run: cannot resume an explanation run there. Choose another folder; nothing in it was changed.
    """
    found = read_kind(folder)
    if found is not None and found != wanted:
        raise ValueError(f"'{os.fspath(folder)}' holds {WHAT[found]}, not {WHAT[wanted].split(' (')[0]}: cannot "
                         f"{doing} there. Choose another folder; nothing in it was changed.")
