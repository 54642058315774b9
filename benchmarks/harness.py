"""What the benchmarks share: interleaved timing rounds, ratios, memory sampling, fresh processes, tables.

Timing. Every benchmark here runs its contenders in *rounds*: each round runs
every contender once, in an order rotated from round to round, so that a slow
spell of a shared machine (other processes on the same cores) hits every
contender alike. Ratios are taken *within* a round (contender / reference of
the same round) and summarised by their median and min–max over the rounds;
times by their median and min–max. Each call is timed on two clocks: wall
time, and the process's CPU time. On a 2-core machine that other jobs keep
busy (load 4–13), consecutive wall times of the same call differ by up to 2x,
CPU times by a few per cent: CPU-time ratios are the stable measure of how
much more work a contender does than its reference in the same mode; wall
time is what a user waits, and what decides between plain and XLA (whose
threading differs).

Memory. :class:`MemorySampler` reads ``/proc/self/status`` every 2 ms in a
thread while a function runs and reports the peak of the resident set
(``VmRSS``) and of its anonymous part (``RssAnon``: the heap, what the process
itself allocated — file pages of a memory-mapped input are left out of it),
as rises over the values just before the call. A fresh process per measured
call (:func:`run_fresh`) keeps allocators that hold on to what they once took
from hiding the next call's needs.

Both scripts importing this module are run as ``python benchmarks/<script>.py``
from the repository root (``PYTHONPATH=$PWD``, or kerasxai installed).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # kerasxai from this checkout when it is not installed
    sys.path.insert(0, ROOT)


# --------------------------------------------------------------------------- the machine


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s "Model name", else /proc/cpuinfo, else platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """One line: CPU model, cores, load average at the start."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average at start "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")


# --------------------------------------------------------------------------- timing


def seconds(fn) -> tuple:
    """``(wall, cpu)`` seconds of one call of ``fn`` (which must block until its result exists).

    ``cpu`` is the process's CPU time (all its threads): on a machine shared with other work it
    varies far less than wall time, because time the process waits for a core is not counted.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(contenders: dict, rounds: int, *, only_first: dict | None = None, log=None) -> dict:
    """Runs ``rounds`` rounds; each runs every contender once, order rotated per round.

    Args:
        contenders: ``{name: fn}``; each ``fn()`` runs one complete call and returns after
            its result is on the host.
        rounds: number of rounds.
        only_first: ``{name: k}``: run that contender in the first ``k`` rounds only (slow ones).
        log: optional ``log(text)`` called after each round.

    Returns:
        ``{"wall": [...], "cpu": [...]}``: one dict ``{name: seconds}`` per round for each clock.
    """
    names = list(contenders)
    only_first = only_first or {}
    result = {"wall": [], "cpu": []}
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        wall, cpu = {}, {}
        for name in order:
            if r < only_first.get(name, rounds):
                wall[name], cpu[name] = seconds(contenders[name])
        result["wall"].append(wall)
        result["cpu"].append(cpu)
        if log is not None:
            log(f"round {r + 1}/{rounds} done")
    return result


class Spread:
    """Median and min–max of a list of numbers."""

    def __init__(self, values):
        self.values = [v for v in values if v == v]  # drop NaN
        self.median = statistics.median(self.values) if self.values else float("nan")
        self.low = min(self.values) if self.values else float("nan")
        self.high = max(self.values) if self.values else float("nan")

    def text(self, digits: int = 2, scale: float = 1.0) -> str:
        if not self.values:
            return "–"
        m, lo, hi = (v * scale for v in (self.median, self.low, self.high))
        if len(self.values) == 1:
            return f"{m:.{digits}f}"
        return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def times_of(table: list, name: str) -> Spread:
    """Seconds of ``name`` over the rounds that ran it."""
    return Spread([row[name] for row in table if name in row])


def ratios(table: list, name: str, reference, factor: float = 1.0) -> Spread:
    """Per-round ``time(name) / (factor * time(reference))``; ``reference`` a name or a function of a round."""
    out = []
    for row in table:
        base = reference(row) if callable(reference) else row.get(reference)
        if name in row and base:
            out.append(row[name] / (factor * base))
    return Spread(out)


def faster(table: list, *names: str) -> str:
    """The name (of ``names``) with the smallest median time."""
    return min(names, key=lambda n: times_of(table, n).median)


# --------------------------------------------------------------------------- kerasxai's XLA choice (TensorFlow)
# These read kerasxai internals (its probe cache and kerasxai.backend.tensorflow.AdaptiveStep), only to
# report which mode each compiled step chose; nothing here changes what kerasxai does.


def step_labels(model) -> dict:
    """``{id(AdaptiveStep): label}`` of kerasxai's TensorFlow steps built for ``model`` so far.

    Reads the probe cache (kerasxai internals), only to say which mode each step chose.
    """
    from kerasxai.probe import Probe, cache

    entry = cache._CACHE.get(model)
    labels = {}
    for probe in (entry[1].values() if entry else ()):
        if not isinstance(probe, Probe):
            continue
        for table in [probe._steps, *probe._callable_steps.values()]:
            for (grads, post, pre), run in table.items():
                label = getattr(post, "fn", post).__name__.strip("_").replace("_post", "")
                if pre is not None:
                    label += "+" + getattr(pre, "fn", pre).__name__
                for step in run.compiled.values():
                    labels[id(step)] = label
    return labels


@contextlib.contextmanager
def steps_called():
    """Collects the TensorFlow steps (``AdaptiveStep``) that kerasxai calls inside the block."""
    from kerasxai.backend.tensorflow import AdaptiveStep

    seen, original = {}, AdaptiveStep.__call__

    def spy(self, *args):
        seen[id(self)] = self
        return original(self, *args)

    AdaptiveStep.__call__ = spy
    try:
        yield seen
    finally:
        AdaptiveStep.__call__ = original


def choice_text(model, steps) -> str:
    labels, parts = step_labels(model), []
    for step in steps.values():
        label = labels.get(id(step), "step")
        if step.xla_failed:
            parts.append(f"{label}: plain (XLA failed)")
        elif step.chosen is None:
            lead = {"xla": "XLA"}.get(getattr(step, "_lead", None), "plain")
            parts.append(f"{label}: undecided ({lead} so far)")
        elif not step._times:
            parts.append(f"{label}: plain (the rule on a CPU with oneDNN: not timed)")
        else:
            mode = "XLA" if step.uses_xla else "plain"
            t = {k: min(v) if isinstance(v, list) else v for k, v in step._times.items()}  # best of its samples
            parts.append(f"{label}: {mode} (plain {t.get('plain', float('nan')):.2f} s, "
                         f"XLA {t.get('xla', float('nan')):.2f} s)")
    return "; ".join(parts)


def warm_up_automatic(model, fn, log=None, most: int = 5000, budget_s: float = 240.0) -> str:
    """Calls ``fn`` until every kerasxai step it runs has chosen plain or XLA (on a CPU without oneDNN a step
    tries the other only once the lead's calls took 40x the lead's trace: hundreds of calls for a small model),
    at most ``most`` calls or ``budget_s`` seconds; returns what each chose."""
    steps, start = {}, time.perf_counter()
    for i in range(most):
        with steps_called() as seen:
            fn()
        steps.update(seen)
        if all(s.chosen is not None or s.xla_failed for s in steps.values()):
            break
        if time.perf_counter() - start > budget_s:
            break
    text = choice_text(model, steps)
    if log is not None:
        log(f"chosen after {i + 1} call(s): {text}")
    return text


# --------------------------------------------------------------------------- TensorFlow floors


def tensorflow_floors(model, layer: str, inputs: dict, host: bool = False) -> dict:
    """The least work each method needs, written by hand: ``{"<kind>@<data>/<mode>": call}``.

    Kinds: ``forward``; ``layer`` (activations and gradient at ``layer``, a ``GradientTape`` on
    ``keras.Model(model.input, [layer.output, model.output])``); ``input`` (gradient at the input,
    only the input watched); ``both`` (the two from one backward pass). Each is a ``tf.function``
    plain and with ``jit_compile=True``, results copied to the host. ``inputs`` maps a data name
    to a batch; a name ``""`` gives keys without ``@``. ``host``: each call is given the NumPy batch
    (copied to the device at every call, as a user's images are) instead of a tensor made once.
    """
    import keras
    import tensorflow as tf

    sub = keras.Model(model.input, [model.get_layer(layer).output, model.output])

    def forward(t):
        return model(t, training=False)

    def layer_gradient(t):
        with tf.GradientTape() as tape:
            a, y = sub(t, training=False)
            score = tf.reduce_max(y, axis=-1)
        return a, tape.gradient(score, a)

    def input_gradient(t):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(t)
            score = tf.reduce_max(model(t, training=False), axis=-1)
        return tape.gradient(score, t)

    def both(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            a, y = sub(t, training=False)
            score = tf.reduce_max(y, axis=-1)
        return (a,) + tuple(tape.gradient(score, [a, t]))

    kinds = {"forward": forward, "layer": layer_gradient, "input": input_gradient, "both": both}
    out = {}
    for data_name, (wanted, data) in inputs.items():
        t = data if host else tf.constant(data)
        for kind in wanted:
            for mode, jit in (("plain", False), ("xla", True)):
                compiled = tf.function(kinds[kind], jit_compile=jit, autograph=False)
                key = f"{kind}{'@' + data_name if data_name else ''}/{mode}"
                out[key] = lambda c=compiled, d=t: tf.nest.map_structure(lambda v: v.numpy(), c(d))
    return out


# --------------------------------------------------------------------------- memory


def _status_kib(*fields) -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in fields:
                out[key] = int(line.split()[1])
    return out


class MemorySampler:
    """Samples ``VmRSS`` and ``RssAnon`` every ``interval`` s while the ``with`` block runs.

    Attributes (MiB), set on exit: ``start_rss``, ``peak_rss``, ``start_anon``, ``peak_anon``,
    ``end_rss``, ``end_anon``; ``rise_rss`` and ``rise_anon`` are the peaks over the start.
    """

    FIELDS = ("VmRSS", "RssAnon")

    def __init__(self, interval: float = 0.002):
        self.interval = interval

    def _read(self):
        kib = _status_kib(*self.FIELDS)
        return kib.get("VmRSS", 0) / 1024, kib.get("RssAnon", 0) / 1024

    def __enter__(self):
        self.start_rss, self.start_anon = self._read()
        self.peak_rss, self.peak_anon = self.start_rss, self.start_anon
        self._done = threading.Event()

        def sample():
            while not self._done.is_set():
                rss, anon = self._read()
                self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.end_rss, self.end_anon = self._read()
        self.peak_rss, self.peak_anon = max(self.peak_rss, self.end_rss), max(self.peak_anon, self.end_anon)
        self.rise_rss = self.peak_rss - self.start_rss
        self.rise_anon = self.peak_anon - self.start_anon
        return False


def process_peak_mib() -> float:
    """The whole process's peak resident memory so far (``VmHWM``), MiB."""
    return _status_kib("VmHWM").get("VmHWM", 0) / 1024


def run_fresh(args: list, env: dict | None = None, timeout: float = 1800) -> dict:
    """Runs ``python <args>`` in a new process; its last stdout line is JSON, returned as a dict.

    On failure returns ``{"error": <last lines of stderr>}``.
    """
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    path = full_env.get("PYTHONPATH", "")
    full_env["PYTHONPATH"] = ROOT + (os.pathsep + path if path else "")
    try:
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail) or f"exit status {out.returncode}"}


def emit(result: dict) -> None:
    """Prints ``result`` as the JSON last line a :func:`run_fresh` parent reads."""
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- tables


def table(headers: list, rows: list) -> str:
    """A Markdown table (readable in a terminal too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    """``ok`` or ``MISS`` for a median against its target (lower is better)."""
    if value != value:
        return "–"
    return "ok" if value <= target else "MISS"


def thread_env(threads) -> dict:
    """Environment variables giving TensorFlow, JAX (XLA) and PyTorch ``threads`` threads each.

    Set before the libraries are imported; empty for 0/None (the libraries' defaults).
    """
    if not threads:
        return {}
    n = str(threads)
    return {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n, "OMP_NUM_THREADS": n,
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                         f"intra_op_parallelism_threads={n}"}


def threads_from_argv(argv, default=0) -> int:
    """The value of ``--threads`` in ``argv`` (read before argparse, so it can be set before imports)."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return default


def quiet_tensorflow() -> None:
    """Silences TensorFlow's C++ start-up messages (set before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
