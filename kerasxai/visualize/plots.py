"""Figures of what a network learned: filter and class images, their optimisation as a GIF,
layer embeddings in 2-D, nearest neighbours.

Figures are :class:`kerasxai.figures.images.Figure` objects (``matplotlib.figure.Figure``
made without pyplot): nothing opens a window, notebooks show them inline, and
``fig.savefig("filters.png")`` saves one.

Examples:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
    ...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    >>> fig = plot_filters(model, "conv", steps=8, input_range=(0, 1), progress=False)
    >>> [ax.get_title() for ax in fig.axes]  # unit and the activation its image reaches
    ['#0  ...', '#1  ...', '#2  ...', '#3  ...']
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image

from kerasxai.figures.images import Figure
from kerasxai.visualize.optimize import ActivationImages, visualize_activation


def _columns(n: int, cols) -> int:
    return int(cols) if cols else int(np.ceil(np.sqrt(n)))


def _show(ax, image):
    image = np.asarray(image)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_activation_images(result: ActivationImages, titles=None, *, cols=None, cell_size: float = 1.5,
                           title=None) -> Figure:
    """A grid of the images of a :func:`visualize_activation` result, one per unit.

    Args:
        result: what :func:`visualize_activation` returned.
        titles: one title per image; default ``"#unit  activation"`` (``"dead"``
            for a unit whose gradient stayed zero).
        cols: images per row (default: a square grid).
        title: the figure's title; default names the layer and the objective.

    Examples:
        >>> import numpy as np
        >>> result = ActivationImages(np.zeros((3, 8, 8, 3), np.uint8), np.array([1.0, 2.0, 0.0]), [0, 1, 2],
        ...                           "conv", "channel", np.zeros((1, 3)), dead=[2])
        >>> [ax.get_title() for ax in plot_activation_images(result).axes if ax.images]
        ['#0  1', '#1  2', '#2  dead']
    """
    n = len(result.units)
    if titles is None:
        titles = [f"#{u}  dead" if u in result.dead else f"#{u}  {a:.3g}"
                  for u, a in zip(result.units, result.activations)]
    cols = _columns(n, cols)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(cell_size * cols, cell_size * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, text in zip(axes.ravel(), result.images, titles):
        ax.set_axis_on()
        _show(ax, image)
        ax.set_title(text, fontsize=8)
    if title is None:
        what = {"logit": "class logit", "channel": "mean activation", "unit": "activation"}[result.objective]
        title = f"{result.layer or 'classes'}: images that maximise each unit ({what} reached)"
    # wrapped to the figure's width (about 13 characters per inch at this size), never cut off
    fig.suptitle(textwrap.fill(title, max(20, int(13 * cell_size * cols))), fontsize=9)
    return fig


def plot_filters(model_or_result, layer=None, units=None, *, cols=None, cell_size: float = 1.5,
                 **options) -> Figure:
    """A grid of the images that excite each filter (or unit) of a layer, titled with the activation reached.

    Args:
        model_or_result: a model (then :func:`visualize_activation` runs with
            ``layer``, ``units`` and ``options``) or an :class:`ActivationImages`.
        layer: a conv layer (nested bases included) or a Dense layer.
        units: which filters; default all of them.
        cols: images per row.
        options: passed to :func:`visualize_activation` (``steps``, ``seed``,
            ``parameterization``, ``batch_size``, ``input_range``, ...).

    Examples:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3, name="conv"),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> len(plot_filters(model, "conv", steps=4, input_range=(0, 1), progress=False).axes)
        4
    """
    result = model_or_result
    if not isinstance(result, ActivationImages):
        if layer is None:
            raise ValueError("plot_filters needs a layer (a conv layer's name); for classes use plot_class_images.")
        result = visualize_activation(model_or_result, layer, units, **options)
    return plot_activation_images(result, cols=cols, cell_size=cell_size)


def plot_class_images(model_or_result, classes=None, class_names=None, *, cols=None, cell_size: float = 2.0,
                      **options) -> Figure:
    """The image made for each class, titled with the class name and the logit reached.

    Args:
        model_or_result: a model (then :func:`visualize_activation` runs on its
            logits for ``classes`` with ``options``) or an :class:`ActivationImages`
            made with ``layer=None``.
        classes: class indices; default all.
        class_names: a name per class index (a list, or a dict index -> name).

    Examples:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(2, activation="softmax")])
        >>> fig = plot_class_images(model, class_names=["disc", "cross"], steps=4, input_range=(0, 1), progress=False)
        >>> [ax.get_title().split(chr(10))[0] for ax in fig.axes]
        ['disc', 'cross']
    """
    result = model_or_result
    if not isinstance(result, ActivationImages):
        result = visualize_activation(model_or_result, None, classes, **options)
    if result.objective != "logit":
        raise ValueError(f"plot_class_images shows class images; this result maximises {result.objective}s of "
                         f"layer '{result.layer}' (use plot_filters).")

    def name(c):
        if class_names is None:
            return f"class {c}"
        try:
            return str(class_names[c])
        except (IndexError, KeyError):
            return f"class {c}"

    titles = [f"{name(c)}\nlogit {a:.3g}" for c, a in zip(result.units, result.activations)]
    return plot_activation_images(result, titles, cols=cols or min(len(result.units), 6), cell_size=cell_size,
                                  title="Images that maximise each class's logit")


def _grid(images, cols, pad: int = 2) -> np.ndarray:
    n, h, w, c = images.shape
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = image
    return out[..., 0] if c == 1 else out


def save_gif(result: ActivationImages, path, *, cols=None, scale: int = 1, duration: int = 120) -> str:
    """Writes the optimisation as an animated GIF: each frame is the grid of all units' images at one step.

    ``result`` must hold frames: call :func:`visualize_activation` with
    ``frames=`` (e.g. 24). The last frame stays three times longer.

    Args:
        result: an :class:`ActivationImages` with ``frames``.
        path: the ``.gif`` file to write.
        cols: images per row.
        scale: enlarge each pixel this many times (nearest neighbour).
        duration: milliseconds per frame.

    Examples:
        >>> import keras, os, tempfile
        >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3, name="conv"),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> result = visualize_activation(model, "conv", steps=6, frames=4, input_range=(0, 1), progress=False)
        >>> path = save_gif(result, os.path.join(tempfile.mkdtemp(), "opt.gif"))
        >>> Image.open(path).n_frames
        4
    """
    if result.frames is None or not len(result.frames):
        raise ValueError("This result has no frames: call visualize_activation(..., frames=24) to record them.")
    cols = _columns(len(result.units), cols)
    pictures = []
    for frame in result.frames:
        grid = _grid(frame, cols)
        picture = Image.fromarray(grid)
        if scale > 1:
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
        pictures.append(picture)
    durations = [duration] * (len(pictures) - 1) + [duration * 3]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return str(path)
