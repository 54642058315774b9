"""kerasxai's own warnings: shown at the caller's line, or collected for one call on its own thread.

Every warning kerasxai's core gives (a hidden softmax, flat maps, an empty region...) goes through
:func:`warn`. Normally it is a plain :func:`warnings.warn` pointing at the user's first line outside
kerasxai. Inside :func:`collecting` it is added to that block's list instead, and nothing is shown:
this is how a folder run gathers each batch's warnings to report them once per run.

Unlike :class:`warnings.catch_warnings`, which swaps process-wide state, a collector belongs to one
thread's context: a folder run collecting on one thread never swallows the warnings of a call another
thread makes at the same time, and two runs never restore each other's filters. Worker threads that
kerasxai starts for a call (:func:`carry`) collect into their caller's list.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings

class ImagesRefused(ValueError):
    """A call's refusal of some of its images, whose maps would mean nothing: NaN or infinite values in
    the images, the model's outputs, the explained layer's activations or a detector's decoded boxes.
    A ``ValueError`` naming them; ``images`` holds their indices among the call's images. A folder
    run records each such image as a row with an error instead of stopping.

    Examples:
        >>> err = ImagesRefused("images hold NaN or infinite values at image(s) 2", [2])
        >>> isinstance(err, ValueError), err.images
        (True, (2,))
    """

    def __init__(self, message: str, images=()):
        super().__init__(message)
        self.images = tuple(int(i) for i in images)


class PerImageWarning(RuntimeWarning):
    """A warning about some of one call's images, named by their index among that call's images: a flat
    map, a region or box with nothing to explain. A folder run records these per image and names the
    files once at its end, instead of repeating each batch's indices.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as shown:
        ...     warnings.simplefilter("always")
        ...     warn("image 3: the map is flat", PerImageWarning)
        >>> issubclass(shown[0].category, RuntimeWarning)
        True
    """


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_COLLECTING: contextvars.ContextVar = contextvars.ContextVar("kerasxai_collecting", default=None)


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning given by the calling function point at the first frame
    outside kerasxai (the user's line).

    Examples:
        >>> def outside_kerasxai():
        ...     return caller_stacklevel()
        >>> outside_kerasxai()  # its own line: no kerasxai frame to skip
        1
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category=UserWarning) -> None:
    """Shows ``message`` as a ``category`` warning at the user's line, or collects it inside :func:`collecting`.

    Examples:
        >>> with collecting() as caught:
        ...     warn("the map is flat", RuntimeWarning)
        >>> [(category.__name__, message) for category, message in caught]
        [('RuntimeWarning', 'the map is flat')]
    """
    collected = _COLLECTING.get()
    if collected is not None:
        collected.append((category, str(message)))
        return
    warnings.warn(message, category, stacklevel=caller_stacklevel())


@contextlib.contextmanager
def collecting():
    """Within the block, kerasxai's warnings on this thread (and on the worker threads its calls start)
    are collected as ``(category, message)`` pairs into the list it yields instead of being shown.

    Examples:
        >>> with collecting() as caught:
        ...     warn("first")
        ...     warn("second", RuntimeWarning)
        >>> [message for _, message in caught]
        ['first', 'second']
    """
    caught: list = []
    token = _COLLECTING.set(caught)
    try:
        yield caught
    finally:
        _COLLECTING.reset(token)


def carry(fn):
    """``fn`` to run once on a worker thread in the calling thread's context: what it warns is collected
    where its caller collects (a pool's threads start with an empty context of their own). Made per
    call (a context runs on one thread at a time).

    Examples:
        >>> import concurrent.futures
        >>> with collecting() as caught, concurrent.futures.ThreadPoolExecutor(1) as pool:
        ...     pool.submit(carry(warn), "from a worker").result()
        >>> caught[0][1]
        'from a worker'
    """
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(fn, *args, **kwargs)
