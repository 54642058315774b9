"""``report.html``: browse a run folder's explanations in a browser, offline.

    kerasxai report RUN_DIR            # (re)writes RUN_DIR/report.html

The page is one self-contained file (its stylesheet, script and data inside
it; no CDN, no server, nothing fetched) that shows the run's images through
relative links into the run folder, so the folder can be zipped, copied or
served as it is. It offers a grid of cards (image, overlay per method, top
class and probability, true label when the folder named one), sorting by
confidence, filters by predicted class, true class, "misclassified only" and
"flat maps", and a detail view per image with every method side by side and
the colour scale. Cards are drawn a screenful at a time and images load
lazily, so runs of many thousands of images stay quick to open.

It reads the run folder that ``kerasxai explain`` writes::

    RUN/run.json            {"model", "weights", "methods", "layer", "target", "class_names",
                             "kerasxai_version", "started", "finished", "images", "listed"}   (all optional;
                            "images" counts the images explained so far, "listed" those the run was given)
                            rows of images that could not be read or explained carry "error": the reason
    RUN/predictions.jsonl   one JSON object per image: "id", "file", "size", "label", "top_k",
                            "target", "target_name", "layer", "maps", "image", "overlays", "methods"

Only ``id`` is required of a row; what is missing is left out of the page
(and said so: no overlays written, run unfinished, files missing).
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import re
import urllib.parse
import warnings

from kerasxai import _warn
from kerasxai.data import imagenet
from kerasxai.figures.common import INPUT_METHODS, MAP_CMAP
from kerasxai.methods.table import ATTENTION_METHODS
from kerasxai.folder import kinds

RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.jsonl"
REPORT_FILE = "report.html"
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report_assets")


def read_run(run_dir: str):
    """The run folder's ``run.json`` (``{}`` if absent) and its rows, with a list of problems found.

    Rows that are not JSON objects with an ``id`` (for instance a last line cut
    short by an interrupted run) are skipped and named in the problems; when an
    ``id`` appears twice, the last row wins.

    Examples:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> with open(os.path.join(run, "predictions.jsonl"), "w") as fh:
        ...     _ = fh.write('{"id": "a", "file": "a.jpg"}\\n{"id": "b", "fi')
        >>> info, rows, problems = read_run(run)
        >>> [r["id"] for r in rows], problems
        (['a'], ['run.json is missing', 'predictions.jsonl line 2 is not a JSON object with an "id": skipped'])
    """
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"no such run folder: {run_dir}")
    path = os.path.join(run_dir, PREDICTIONS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{run_dir} has no {PREDICTIONS_FILE}: is it a kerasxai run folder? "
            "(`kerasxai explain IMAGES --out RUN_DIR` writes one)"
        )
    problems = []
    info = {}
    run_path = os.path.join(run_dir, RUN_FILE)
    if os.path.isfile(run_path):
        try:
            with open(run_path, encoding="utf-8") as fh:
                info = json.load(fh)
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            problems.append(f"run.json could not be read ({err}); run details left out")
            info = {}
    else:
        problems.append("run.json is missing")
    rows, seen = {}, set()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
                problems.append(f"{PREDICTIONS_FILE} line {number} is not a JSON object with an \"id\": skipped")
                continue
            key = str(row["id"])
            if key in seen:
                problems.append(f"id {key!r} appears more than once in {PREDICTIONS_FILE}: the last row is shown")
            seen.add(key)
            rows[key] = row
    return info, list(rows.values()), problems


def _normalised(name) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def _is_correct(label, top):
    """Whether the true ``label`` names the top class (by name, index or ImageNet WordNet id); None without a label."""
    if label is None or label == "" or not top:
        return None
    index, name = top.get("class"), top.get("name")
    accepted = {_normalised(name)} if name is not None else set()
    if index is not None:
        accepted |= {str(index), f"class {index}"}
        if name is not None and isinstance(index, int) and 0 <= index < 1000:
            if imagenet.class_names()[index] == name:
                accepted.add(imagenet.wnids()[index])
    return _normalised(label) in accepted


def _known_classes(info: dict, rows: list) -> set:
    """Every way a true label may name one of the model's classes (normalised): run.json's class
    names, the classes seen in any top-k (names, indices), and all of ImageNet's for an ImageNet run."""
    known = set()
    names = info.get("class_names")
    if isinstance(names, list):
        for i, name in enumerate(names):
            known |= {_normalised(name), str(i), f"class {i}"}
    imagenet_run = False
    for row in rows:
        for t in row.get("top_k") or []:
            if not isinstance(t, dict):
                continue
            index, name = t.get("class"), t.get("name")
            if name is not None:
                known.add(_normalised(name))
            if isinstance(index, int):
                known |= {str(index), f"class {index}"}
                if name is not None and 0 <= index < 1000 and not imagenet_run:
                    imagenet_run = imagenet.class_names()[index] == name
    if imagenet_run:
        known |= {_normalised(n) for n in imagenet.class_names()} | set(imagenet.wnids())
    return known


def _link(run_dir, out_dir, rel, missing):
    """A URL from the page to ``rel`` (a path inside the run folder), or None if the file is not there."""
    if not rel or not isinstance(rel, str):
        return None
    path = os.path.join(run_dir, rel)
    if not os.path.isfile(path):
        missing.append(rel)
        return None
    return urllib.parse.quote(os.path.relpath(path, out_dir).replace(os.sep, "/"))


def _number(value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _target_text(target, class_names=None):
    """The run's target as the page shows it: a segmentation target (a dict in ``run.json``) in words."""
    if kinds.is_segmentation(target):
        c = target.get("segmentation")
        name = (class_names[c] if isinstance(class_names, list) and isinstance(c, int) and 0 <= c < len(class_names)
                else f"class {c}")
        return f"{name}'s {'predicted region' if target.get('mask') == 'predicted' else 'region'} (outlined)"
    return target if target is None or isinstance(target, (str, int)) else str(target)


def _plain(value):
    """``value`` with anything JSON cannot carry (NaN, inf, objects) made safe for the page."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _text(value):
    return None if value is None or value == "" else str(value)


def _explains(row, first, target, predicted, run_target):
    """The class the maps explain, said with why (``"cat (true label)"``), when it is not the top prediction; else None."""
    if target is None or predicted is None:
        return None
    index, top = row.get("target"), first.get("class")
    same = index == top if isinstance(index, int) and isinstance(top, int) else _normalised(target) == _normalised(predicted)
    if same:
        return None
    why = "true label" if run_target == "label" else "the run's target" if isinstance(run_target, int) else None
    return f"{target} ({why})" if why else str(target)


def _card(index, row, run_dir, out_dir, run_target=None):
    """What the page needs of one row: short, already checked, paths made into links.

    ``explains`` names the class the maps explain when it is not the predicted
    one (``--target label`` or a class index): the card says so.
    """
    missing = []
    top = [t for t in row.get("top_k") or [] if isinstance(t, dict)]
    first = top[0] if top else {}
    stats = {}
    methods = row.get("methods")
    for method, s in (methods.items() if isinstance(methods, dict) else ()):
        s = s if isinstance(s, dict) else {}
        stats[method] = {"flat": bool(s.get("flat")), "max": _number(s.get("max")), "mean": _number(s.get("mean"))}
    overlays = row.get("overlays")
    links = {m: _link(run_dir, out_dir, p, missing) for m, p in overlays.items()} if isinstance(overlays, dict) else None
    size = row.get("size")
    predicted = _text(first.get("name")) or (f"class {first['class']}" if "class" in first else None)
    target = row.get("target_name") or (f"class {row['target']}" if row.get("target") is not None else predicted)
    return {
        "n": index,
        "id": str(row["id"]),
        "file": str(row.get("file") or row["id"]),
        "size": size if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size) else None,
        "label": _text(row.get("label")),
        "pred": predicted,
        "conf": _number(first.get("probability")),
        "top": [[t.get("class") if isinstance(t.get("class"), int) else None, _text(t.get("name")),
                 _number(t.get("probability"))] for t in top],
        "target": _text(target),
        "explains": _explains(row, first, _text(target), predicted, run_target),
        "layer": _text(row.get("layer")),
        "correct": _is_correct(row.get("label"), first),
        "image": _link(run_dir, out_dir, row.get("image"), missing),
        "overlays": links,
        "stats": stats,
        "flat": sorted(m for m, s in stats.items() if s["flat"]),
        "nothing": row.get("nothing") is True,  # the target's region is empty here: nothing to explain
        "missing": missing,
        "error": _text(row.get("error")),
    }


def _gradient(cmap: str, stops: int = 11) -> str:
    import matplotlib

    colors = matplotlib.colormaps[cmap]([i / (stops - 1) for i in range(stops)])
    parts = [f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)}) {100 * i / (stops - 1):.0f}%"
             for i, (r, g, b, _) in enumerate(colors)]
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


def report_data(run_dir: str, out_dir: str | None = None) -> dict:
    """Everything the page shows, as one JSON-able dict (what :func:`write_report` embeds)."""
    info, rows, problems = read_run(run_dir)
    out_dir = out_dir or run_dir
    cards = [_card(i, row, run_dir, out_dir, info.get("target")) for i, row in enumerate(rows)]
    methods = [str(m) for m in info.get("methods") or []] if isinstance(info.get("methods"), list) else []
    for card in cards:
        methods += [m for m in list(card["stats"]) + list(card["overlays"] or {}) if m not in methods]
    known = _known_classes(info, rows)
    foreign = sorted({c["label"] for c in cards if c["label"] not in (None, "") and _normalised(c["label"]) not in known})
    if foreign:  # a label that is no class of the model cannot make a prediction wrong
        for card in cards:
            if card["label"] in foreign:
                card["correct"] = None
        problems.append(f"true label(s) {', '.join(foreign[:10])}{' ...' if len(foreign) > 10 else ''} name no class "
                        "of the model: those images' predictions are not marked right or wrong")
    missing = sum(len(c["missing"]) for c in cards)
    if missing:
        examples = ", ".join(m for c in cards for m in c["missing"])[:200]
        problems.append(f"{missing} file(s) named in {PREDICTIONS_FILE} are not in the run folder ({examples})")
    cmap = info.get("cmap") or MAP_CMAP  # the colours of the overlays, and of every kerasxai figure
    cmaps = cmap if isinstance(cmap, dict) else {m: cmap for m in methods}
    run = {k: _plain(info.get(k)) for k in ("model", "weights", "methods", "layer", "target",
                                            "kerasxai_version", "started", "finished", "images", "listed")}
    run["target"] = _target_text(run["target"], info.get("class_names"))
    return {
        "run": run,
        "title": os.path.basename(os.path.abspath(run_dir)),
        "methods": methods,
        "input_methods": sorted(INPUT_METHODS),
        "attention_methods": sorted(ATTENTION_METHODS),
        "scales": {m: _gradient(cmaps.get(m, MAP_CMAP)) for m in methods},
        "alpha": _number(info.get("alpha")) or 0.4,
        "overlays": any(c["overlays"] is not None for c in cards),
        "labels": any(c["label"] not in (None, "") for c in cards),
        "problems": problems,
        "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cards": cards,
    }


def _embed(data) -> str:
    """JSON that is safe inside a <script> element (no "</script>", no "<!--")."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _asset(name: str) -> str:
    with open(os.path.join(ASSETS, name), encoding="utf-8") as fh:
        return fh.read()


def write_report(run_dir: str, out: str | None = None) -> str:
    """Writes ``report.html`` for a run folder; returns its path.

    Args:
        run_dir: a folder written by ``kerasxai explain`` (``predictions.jsonl``
            and, optionally, ``run.json``, ``images/``, ``overlays/``, ``maps/``).
        out: where to write the page; default ``run_dir/report.html``. Images
            are linked relative to it, so keep it beside the run folder's files.

    Nothing in the run folder is changed but the page itself. Problems found
    (rows skipped, files missing) are shown at the top of the page and given
    as one warning.

    Examples:
        >>> import json, tempfile
        >>> run = tempfile.mkdtemp()
        >>> row = {"id": "cat1", "file": "cat1.jpg", "top_k": [{"class": 281, "name": "tabby", "probability": 0.62}]}
        >>> with open(os.path.join(run, "predictions.jsonl"), "w") as fh:
        ...     _ = fh.write(json.dumps(row) + "\\n")
        >>> with warnings.catch_warnings(record=True) as caught:  # no run.json here: a warning says so
        ...     page = write_report(run)
        >>> os.path.basename(page), str(caught[0].message).endswith("run.json is missing")
        ('report.html', True)
    """
    kinds.refuse_other_kind(run_dir, kinds.EXPLANATION, "write the report of an explanation run")
    out = out or os.path.join(run_dir, REPORT_FILE)
    out_dir = os.path.dirname(os.path.abspath(out))
    data = report_data(run_dir, out_dir)
    if data["problems"]:
        warnings.warn(f"kerasxai report for {run_dir}: " + "; ".join(data["problems"][:5])
                      + (f"; and {len(data['problems']) - 5} more" if len(data["problems"]) > 5 else ""),
                      RuntimeWarning, stacklevel=_warn.caller_stacklevel())
    model = data["run"].get("model") or data["title"]
    parts = {"title": html.escape(f"kerasxai report: {model}"), "css": _asset("report.css"),
             "data": _embed(data), "js": _asset("report.js")}
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("report.html"))  # one pass
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, out)  # a reader never sees half a page
    return out
