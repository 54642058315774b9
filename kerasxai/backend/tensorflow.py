"""TensorFlow: ``tf.function`` or XLA, and ``tf.GradientTape``.

Whether XLA (``jit_compile=True``) is faster depends on the machine and the model, and its first call
costs a compile (1-10 s on a CPU for the keras.applications models measured). With the default
(``jit_compile=None``) a step chooses by the machine (:func:`measuring`):

- a CPU where TensorFlow runs oneDNN's kernels (on by default on CPUs with AVX-512 VNNI or newer): the
  plain ``tf.function``, nothing timed. XLA was *slower* there for every floor measured (1.03x to 1.28x,
  ``benchmarks/bench_methods.py``, ``docs/speed.md``), and timing it on the first calls cost a short session
  up to 25 % (``benchmarks/bench_first_calls.py``).
- a CPU without oneDNN (TensorFlow's own Eigen kernels, as on CPUs without AVX-512): XLA's steady step was
  7-40 % faster for VGG16 and 30 % for ResNet50's input gradient, but 4-7x slower for MobileNetV2 and
  EfficientNetB0 (depthwise convolutions) and slower for small convolutional networks. One variant leads,
  timed as it runs: XLA from the first call where every layer of the model is of a kind XLA was measured fast
  on (dense convolutions and Dense, no BatchNormalization or depthwise convolution: the probe counts its
  multiply-adds, :mod:`kerasxai.probe.cost`) and a batch needs at least ``_XLA_FIRST_MACS`` (5e10) of them
  (VGG16 at 224x224 with 4 or 8 images: 0.70-1.01x plain's time over calls 1-7; 1 image: 1.2-1.35x), for two
  batch sizes at most (batches that keep growing would compile XLA on every call); plain otherwise. Once the
  lead's calls have taken ``_REPAY`` (40) times its first call's overhead (its time less the best later one:
  plain's trace, or XLA's compile; XLA's compile and first call took 2-9x plain's trace), and not before
  call 8, the other is tried: one call traces or compiles it, the next three time it (only one
  if it is more than 5 % slower), and it takes over if its median is at least 3 % below that of the lead's
  last five calls. A lead that loses so costs at most about a tenth of the time the step had run. A step that
  computes in float16 or bfloat16 is not tried: its lead stays, so that its maps do not change late in a
  session (below).
- a GPU or TPU, where XLA usually wins: the first call runs plain (a fast start), the second is timed, the
  third compiles XLA; calls 4, 5 and 6 time XLA, plain and XLA again.

Then the faster runs (on a GPU, the best of two timed calls each; XLA only if at least 3 % faster). Only
calls with the largest batch seen take part (XLA compiles per shape: a one-image test call does not decide
for a folder's batches); once XLA is chosen, a smaller batch (a folder's last) runs plain rather than
compiling again, and a larger one is measured anew. A model XLA cannot compile falls back to the plain
function without an error.
``kerasxai.backend.set_jit_compile(True | False)`` fixes the choice, and with it the numbers: plain and XLA
round differently, so a step's maps can change slightly where it switches (relative RMS gaps measured: 1e-7
to 6e-6 for small float32 models, 4e-4 for saliency of a 13-layer ReLU/BatchNorm network, whose gradients
cross ReLU kinks, 1e-3 under ``mixed_float16`` and 1e-2 under ``mixed_bfloat16``). Fix the choice where
maps must repeat exactly within a session.

One exception: TensorFlow's own CPU kernels (without oneDNN) compute the gradient of a ``channels_first``
convolution only in XLA ("Conv2DCustomBackpropInputOp only supports NHWC"). A step that meets that error
runs XLA from then on, whatever the setting (Keras does the same for its channels_first 3-D convolutions).
"""

from __future__ import annotations

import logging
import re
import threading
import time

import numpy as np
import tensorflow as tf

from kerasxai.backend.settings import jit_compile_setting

try:  # no public API says whether TensorFlow runs oneDNN's kernels
    from tensorflow.python.util import _pywrap_util_port
except ImportError:
    _pywrap_util_port = None

logger = logging.getLogger("kerasxai")


class _Step:
    """Forward, gradients of the score with respect to some arguments, then ``post``.

    An object rather than a closure: TensorFlow counts traces per Python code
    object, so every step built from one closure would share a count and a
    probe's first traces (one per method and shape, all expected) would be
    reported as "excessive retracing". Each object is counted on its own.
    """

    def __init__(self, forward, differentiate, post):
        self.forward, self.differentiate, self.post = forward, differentiate, post

    def __call__(self, *args):
        if not self.differentiate:
            _, aux = self.forward(*args)
            return self.post(aux, [])
        # Only the arguments are watched: nothing is recorded for the weights.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for i in self.differentiate:
                tape.watch(args[i])
            score, aux = self.forward(*args)
        grads = tape.gradient(score, [args[i] for i in self.differentiate])
        return self.post(aux, [None if g is None else tf.cast(g, tf.float32) for g in grads])


def compile_step(forward, variables, differentiate, post, specs, jit_compile, macs=None):
    signature = None if specs is None else [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
    # autograph=False: steps have no Python control flow on tensors to convert.
    plain = tf.function(_Step(forward, differentiate, post), input_signature=signature, autograph=False)
    xla = tf.function(_Step(forward, differentiate, post), input_signature=signature, autograph=False,
                      jit_compile=True)
    return AdaptiveStep(plain, xla, jit_compile, macs=macs)


def _sync(out):
    for t in tf.nest.flatten(out):
        if isinstance(t, tf.Tensor):
            t.numpy()  # waits for the step to finish (GPUs run asynchronously)
            break
    return out


def accelerated() -> bool:
    """Whether TensorFlow runs on a GPU or TPU here (where XLA usually wins, so steps measure it)."""
    if _ACCELERATED[0] is None:
        _ACCELERATED[0] = bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    return _ACCELERATED[0]


_ACCELERATED = [None]


def place(arrays) -> list:
    """Nothing is placed ahead on TensorFlow: its compiled call converts the NumPy arrays itself."""
    return [None] * len(arrays)


# How a step (jit_compile=None) times plain against XLA on a GPU or TPU (see the module's docstring), as
# (what runs, timed?) for its calls 1, 2, ... of the shape measured; the faster runs from the call after the last.
_NOW = (("plain", False), ("plain", True), ("xla", False), ("xla", True), ("plain", True), ("xla", True))
# On a CPU without oneDNN, the variant that does not lead is tried only once the lead's calls have taken this
# many times the lead's first-call overhead (its trace or compile): a trial that loses then costs at most about a
# tenth of that time.
_REPAY = 40
_LATE_FROM = 8  # and not before this call
_LATE_XLA_CALLS = 3  # the trial's timed calls (after the one that compiles), unless the first loses clearly
# There, a step of a model made only of layers XLA's CPU code was measured fast on (dense convolutions, no
# BatchNormalization or depthwise convolution: VGG16 and VGG19) runs XLA from its first call when a batch needs at
# least this many multiply-adds (VGG16, 224x224: 8 images, 124e9, 0-7 % faster over calls 1-7; 1 image, 15e9, and
# a 4-block CNN at 128x128, 7e9: slower).
_XLA_FIRST_MACS = 5e10
_XLA_LEADS = 2  # batch sizes XLA leads at most: batches that keep growing would compile XLA on every call


def onednn() -> bool:
    """Whether TensorFlow's CPU kernels here are oneDNN's (on by default on CPUs with AVX-512 VNNI or newer;
    ``TF_ENABLE_ONEDNN_OPTS`` overrides). ``False`` where TensorFlow does not say.

    Example:
        >>> onednn() in (True, False)
        True
    """
    return bool(getattr(_pywrap_util_port, "IsMklEnabled", lambda: False)())


def measuring() -> str:
    """How a step with ``jit_compile=None`` chooses here: ``"now"`` (a GPU or TPU), ``"never"`` (plain, nothing
    timed: a CPU with oneDNN, where XLA lost every floor measured) or ``"late"`` (a CPU without oneDNN).

    Example:
        >>> measuring() in ("now", "late", "never")
        True
    """
    if _MEASURING[0] is None:
        _MEASURING[0] = "now" if accelerated() else "never" if onednn() else "late"
    return _MEASURING[0]


_MEASURING = [None]


class AdaptiveStep:
    """A step that runs plain or XLA-compiled: fixed by ``jit_compile``, else chosen as :func:`measuring` says
    (``measure``: ``"now"``, ``"late"`` or ``"never"``; None asks :func:`measuring`)."""

    def __init__(self, plain, xla, jit_compile=None, measure=None, macs=None):
        self.plain, self.xla, self.jit_compile, self.measure = plain, xla, jit_compile, measure
        self.macs = macs  # multiply-adds per example of a model whose layers all suit XLA's CPU code, else None
        self.calls, self.chosen, self.xla_failed, self.uses_xla = 0, None, False, False
        self.plain_unsupported = None  # the error of a plain run whose kernels this machine lacks (then XLA runs)
        self.xla_error = None  # why XLA could not compile this step
        self._times, self._shapes, self._size = {}, None, -1
        self._first = None  # the plain function's first call (its trace): its shapes, its time, the best later one
        self._first_xla = None  # the same for XLA's first call (its compile), where XLA leads
        # "late": what runs until the trial ("plain" or "xla"), its time on the shape measured, the trial's calls
        self._lead, self._lead_total, self._trial = None, 0.0, 0
        self._xla_leads = 0  # shapes XLA led (each compiled on the user's call, unpaid: at most _XLA_LEADS)
        # _choosing: the calls that make a choice, one at a time (reentrant: a restart takes it too); _books: times
        self._choosing, self._books = threading.RLock(), threading.Lock()

    def __call__(self, *args):
        mode = self.jit_compile if self.jit_compile is not None else jit_compile_setting()
        if mode is False or self.xla_failed:
            return self._plain(*args)
        if mode is True:
            return self._try_xla(args)
        if self.chosen is not None:
            return self.chosen(*args)
        rule = self.measure or measuring()
        if rule == "never":
            self.chosen = self._plain  # plain, no XLA run on the user's time (see the module's docstring)
            return self._plain(*args)
        if self.plain_unsupported is not None:  # plain cannot run here: XLA it is
            self.chosen = self._plain
            return self._plain(*args)
        if rule == "late":
            return self._late(args)
        # The calls that make the choice run one at a time: calls from several threads would be
        # numbered and timed against each other (and a call could read a time not yet taken).
        with self._choosing:
            if self.chosen is not None:
                return self.chosen(*args)
            if not self._measured(args):
                return self._plain(*args)
            name, timed = _NOW[self.calls]
            self.calls += 1
            out = self._run(name, timed, args)
            if self.calls == len(_NOW) and not self.xla_failed:
                self._decide()
            return out

    def _measured(self, args) -> bool:
        """Whether this call's shapes are the ones measured: the largest batch seen (XLA compiles per shape). A
        test call on one image before a run over a folder does not decide for the folder's batches, and a shorter
        last batch is not timed against full ones; calls of other shapes run plain, untimed."""
        shapes = _shapes_of(args)
        if shapes == self._shapes:
            return True
        if _size_of(shapes) <= self._size:
            return False
        with self._choosing, self._books:  # not while another thread's trial runs on the shapes measured so far
            if _size_of(shapes) <= self._size:
                return shapes == self._shapes
            self._shapes, self._size, self.calls, self._times = shapes, _size_of(shapes), 0, {}
            self._lead, self._lead_total, self._trial, self.chosen, self.uses_xla = None, 0.0, 0, None, False
            return True

    def _run(self, name, timed, args):
        fn = self._plain if name == "plain" else (lambda *a: self._try_xla(a))
        out = self._timed(name, fn, args) if timed else fn(*args)
        if self.xla_failed:  # XLA cannot compile this step: plain from now on
            self.chosen = self._plain
        return out

    def _late(self, args):
        """A CPU without oneDNN: one variant leads (plain, or XLA for a large batch of a model that suits it), timed as
        it runs, until a trial of the other would cost at most about a tenth of the time so far; then the other runs
        one call untimed (its trace or compile) and three timed (one if it loses clearly)."""
        if not self._measured(args):
            return self._plain(*args)
        if self._lead is None:
            macs = self.macs * int(args[0].shape[0]) if self.macs and args and getattr(args[0], "shape", ()) else 0
            self._lead = "xla" if macs >= _XLA_FIRST_MACS and self._xla_leads < _XLA_LEADS else "plain"
            self._xla_leads += self._lead == "xla"
        if not self._trial_due():
            return self._run_lead(args)
        with self._choosing:
            if self.chosen is not None:
                return self.chosen(*args)
            if not self._trial_due():  # a larger batch restarted the measurement meanwhile
                return self._run_lead(args)
            lead = self._lead
            if not self._trial and _sixteen_bit(self.plain if lead == "plain" else self.xla, args):
                # Plain and XLA round 16-bit math differently (1e-3 to 1e-2 relative RMS on saliency): a switch
                # this late would change the maps between a session's calls. The lead stays.
                self.chosen = self._plain if lead == "plain" else self._xla_when_measured
                self.uses_xla = lead == "xla"
                logger.info("kerasxai: %s runs this step (16-bit compute: the other is not tried, so that its maps "
                            "stay the same within the session)", "XLA" if lead == "xla" else "tf.function")
                return self.chosen(*args)
            other = "xla" if lead == "plain" else "plain"
            self._trial += 1
            out = self._run(other, self._trial > 1, args)  # the first traces or compiles: untimed
            led, tried = self._times.get(lead), self._times.get(other)
            if self.xla_failed or not led or not tried:
                return out
            # Typical against typical: the trial's timed calls against the lead's last five (the best of hundreds of
            # the lead's calls against the best of three would favour the lead).
            led, tried = np.median(led[-5:]), np.median(tried)
            if self._trial == 1 + _LATE_XLA_CALLS or (self._trial == 2 and tried > 1.05 * led):
                self._decide(*((led, tried) if lead == "plain" else (tried, led)), keep=lead)
            return out

    def _run_lead(self, args):
        lead, first = self._lead, self._lead_first()
        traces = first is None  # this call traces (plain: _plain times it) or compiles (XLA: timed here)
        start = time.perf_counter()
        out = _sync(self._plain(*args) if lead == "plain" else self._try_xla(args))
        took = time.perf_counter() - start
        if self.xla_failed:  # XLA cannot compile this step: plain from now on
            self.chosen = self._plain
            return out
        with self._books:
            if lead == "xla" and traces:
                self._first_xla = first = {"shapes": self._shapes, "took": took, "best": None}
            elif not traces and first is not None and first["shapes"] == self._shapes:
                first["best"] = min(took, first["best"] or np.inf)
            if self.calls:  # a shape's first call is not timed against later ones
                self._times.setdefault(lead, []).append(took)
            self.calls += 1
            self._lead_total += took
        return out

    def _lead_first(self):
        return self._first if self._lead == "plain" else self._first_xla

    def _trial_due(self) -> bool:
        if self._trial:
            return True
        first = self._lead_first()
        if self.calls < _LATE_FROM - 1 or not self._times.get(self._lead) or first is None:
            return False
        trace = first["took"] - first["best"] if first["best"] is not None else first["took"]
        return self._lead_total >= _REPAY * max(trace, 0.0)

    def _best(self, name) -> float:
        return min(self._times.get(name) or [np.inf])

    def _decide(self, plain=None, xla=None, keep="plain"):
        """Keeps ``keep`` unless the other is at least 3 % faster: by default the best of each one's timed calls (on a
        GPU, two each)."""
        plain = self._best("plain") if plain is None else plain
        xla = self._best("xla") if xla is None else xla
        self.uses_xla = xla < 0.97 * plain if keep == "plain" else not plain < 0.97 * xla
        self.chosen = self._xla_when_measured if self.uses_xla else self._plain
        logger.info("kerasxai: %s runs this step (plain %.3fs, XLA %.3fs; %d and %d timed calls)",
                    "XLA" if self.uses_xla else "tf.function", plain, xla, len(self._times.get("plain", ())),
                    len(self._times.get("xla", ())))

    def _xla_when_measured(self, *args):
        """XLA, chosen: for the shapes measured. XLA compiles per shape: a smaller batch (a folder's last) runs
        plain rather than compiling again for one call; a larger one is measured anew, as before the choice."""
        shapes = _shapes_of(args)
        if shapes != self._shapes:
            if self._measured(args):  # a larger batch: measured anew (this clears the choice)
                return self(*args)
            return self._plain(*args)
        try:
            return self.xla(*args)
        except tf.errors.OpError as err:  # e.g. memory: plain from now on, as when XLA fails in the trial
            self.chosen, self.uses_xla = self._plain, False
            logger.info("kerasxai: XLA failed on a call of this step (%s); tf.function runs it", _first_line(err))
            return self._plain(*args)

    def _timed(self, name, fn, args):
        start = time.perf_counter()
        out = _sync(fn(*args))
        self._times.setdefault(name, []).append(time.perf_counter() - start)
        return out

    def _try_xla(self, args):
        try:
            return _sync(self.xla(*args))
        except (tf.errors.OpError, NotImplementedError, TypeError, ValueError) as err:
            self.xla_failed, self.xla_error = True, err
            if self.plain_unsupported is not None:  # neither runs here
                raise _neither(self.plain_unsupported, err) from err
            logger.info("kerasxai: XLA cannot compile this step (%s); tf.function runs it", str(err).splitlines()[0][:200])
            return self._plain(*args)

    def _plain(self, *args):
        """The plain ``tf.function``; XLA instead where this machine's kernels lack one of its ops (see the module)."""
        if self.plain_unsupported is None:
            try:
                if self._first is None:  # its first call traces it: how long is what an XLA trial is weighed against
                    start = time.perf_counter()
                    out = _sync(self.plain(*args))
                    self._first = {"shapes": _shapes_of(args), "took": time.perf_counter() - start, "best": None}
                    return out
                return self.plain(*args)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as err:
                if not runs_compiled_only(err):
                    raise
                self.plain_unsupported = err
                logger.info("kerasxai: TensorFlow's CPU kernels here lack an op of this step (%s); XLA runs it",
                            _UNSUPPORTED_LAYOUT.search(str(err)).group(0))
        if self.xla_failed:
            raise _neither(self.plain_unsupported, self.xla_error) from self.xla_error
        return self._try_xla(args)  # its failure, with the plain step's, is an error

    def experimental_get_tracing_count(self) -> int:
        return self.plain.experimental_get_tracing_count() + self.xla.experimental_get_tracing_count()


def _sixteen_bit(fn, args) -> bool:
    """Whether the traced ``fn`` computes in float16 or bfloat16 (a mixed-precision model, or a 16-bit one)."""
    if not hasattr(fn, "get_concrete_function"):  # not a tf.function (a step built by hand)
        return False
    graph = fn.get_concrete_function(*args).graph
    return any(t.dtype in (tf.float16, tf.bfloat16) for op in graph.get_operations() for t in op.outputs)


def _shapes_of(args) -> tuple:
    return tuple(tuple(getattr(a, "shape", ())) for a in args)


def _size_of(shapes) -> int:
    return sum(int(np.prod(s)) for s in shapes)


# TensorFlow's messages when its CPU kernels (without oneDNN) lack a channels_first op:
# "Conv2DCustomBackpropInputOp only supports NHWC." (InvalidArgumentError) and "The Conv2D op currently only
# supports the NHWC tensor format on the CPU." (UnimplementedError)
_UNSUPPORTED_LAYOUT = re.compile(r"\w+(?: op currently)? only supports (?:the )?N(?:D?H)?WC")


def runs_compiled_only(error) -> bool:
    """Whether ``error`` is TensorFlow's for a channels_first op its CPU kernels lack (XLA has it)."""
    return (isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError))
            and _UNSUPPORTED_LAYOUT.search(str(error)) is not None)


def _neither(plain_error, xla_error) -> RuntimeError:
    first = _UNSUPPORTED_LAYOUT.search(str(plain_error)).group(0)
    return RuntimeError(
        f"TensorFlow cannot run this step on this CPU: its own kernels lack a channels_first op ({first}: "
        f"TensorFlow without oneDNN, as on CPUs without AVX-512), and XLA could not compile it "
        f"({_first_line(xla_error)}). Rebuild the model with data_format='channels_last' in its layers and copy "
        "the weights over (model.set_weights; a Flatten before a Dense orders its features differently), or "
        "explain it on a GPU or on the JAX or PyTorch backend."
    )


def _first_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__
