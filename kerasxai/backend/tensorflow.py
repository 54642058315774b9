"""TensorFlow: ``tf.function`` or XLA, and ``tf.GradientTape``.

Whether XLA (``jit_compile=True``) is faster depends on the machine and the model. On the CPUs measured
(``benchmarks/bench_methods.py``, ``docs/speed.md``) XLA was *slower* than the plain ``tf.function`` for
every floor (1.03x to 1.28x), and measuring on the user's first calls cost a short session up to 25 %
(``benchmarks/bench_first_calls.py``): so on a CPU the default (``jit_compile=None``) is the plain
function, with nothing timed. On a GPU or TPU, where XLA usually wins, each compiled step *measures*: its
first call runs the plain ``tf.function`` (a fast start), the second is timed, the third compiles the XLA
version; calls 4, 5 and 6 time XLA, plain and XLA again, and from then on the faster (best of two each;
XLA only if at least 3 % faster) runs. A model XLA cannot compile falls back to the plain function without
an error. ``kerasxai.backend.set_jit_compile(True | False)`` fixes the choice.

One exception: TensorFlow's own CPU kernels (without oneDNN, as on CPUs without AVX-512) compute the
gradient of a ``channels_first`` convolution only in XLA ("Conv2DCustomBackpropInputOp only supports
NHWC"). A step that meets that error runs XLA from then on, whatever the setting (Keras does the same
for its channels_first 3-D convolutions).
"""

from __future__ import annotations

import logging
import re
import threading
import time

import tensorflow as tf

from kerasxai.backend.settings import jit_compile_setting

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


def compile_step(forward, variables, differentiate, post, specs, jit_compile):
    signature = None if specs is None else [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
    # autograph=False: steps have no Python control flow on tensors to convert.
    plain = tf.function(_Step(forward, differentiate, post), input_signature=signature, autograph=False)
    xla = tf.function(_Step(forward, differentiate, post), input_signature=signature, autograph=False,
                      jit_compile=True)
    return AdaptiveStep(plain, xla, jit_compile)


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


class AdaptiveStep:
    """A step that runs plain or XLA-compiled: fixed by ``jit_compile``, else plain on a CPU, chosen by
    timing on an accelerator (``measure``: None decides by :func:`accelerated`)."""

    def __init__(self, plain, xla, jit_compile=None, measure=None):
        self.plain, self.xla, self.jit_compile, self.measure = plain, xla, jit_compile, measure
        self.calls, self.chosen, self.xla_failed = 0, None, False
        self.plain_unsupported = None  # the error of a plain run whose kernels this machine lacks (then XLA runs)
        self.xla_error = None  # why XLA could not compile this step
        self._times, self._shapes = {}, None
        self._choosing = threading.Lock()

    def __call__(self, *args):
        mode = self.jit_compile if self.jit_compile is not None else jit_compile_setting()
        if mode is False or self.xla_failed:
            return self._plain(*args)
        if mode is None and not (accelerated() if self.measure is None else self.measure):
            self.chosen = self._plain  # a CPU: plain, no XLA run on the user's time (see the module's docstring)
            return self._plain(*args)
        if mode is True:
            return self._try_xla(args)
        if self.chosen is not None:
            return self.chosen(*args)
        # The first calls, which make the choice, run one at a time: calls from several threads
        # would be numbered and timed against each other (and a call could read a time not yet taken).
        with self._choosing:
            if self.chosen is not None:
                return self.chosen(*args)
            return self._choose(args)

    def _choose(self, args):
        # Only calls with the shapes of the first one take part in the choice: a shorter last batch
        # would be timed against a full one (and XLA compiles per shape). Others run plain.
        shapes = tuple(tuple(getattr(a, "shape", ())) for a in args)
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            return self._plain(*args)
        self.calls += 1
        if self.calls == 1:  # traces: untimed
            return self._plain(*args)
        if self.calls == 3:  # compiles: untimed
            return self._try_xla(args)
        # calls 2, 4, 5, 6: plain, XLA, plain, XLA, each timed; the faster of each pair decides
        name = "plain" if self.calls in (2, 5) else "xla"
        out = self._timed(name, self._plain if name == "plain" else self.xla, args)
        if self.calls == 6:
            plain, xla = min(self._times["plain"]), min(self._times["xla"])
            faster = xla < 0.97 * plain
            self.chosen = self.xla if faster else self._plain
            logger.info("kerasxai: %s runs this step (best of two: plain %.3fs, XLA %.3fs)",
                        "XLA" if faster else "tf.function", plain, xla)
        return out

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
