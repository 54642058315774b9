"""kerasxai under TensorFlow, JAX and PyTorch, against each backend's own hand-written floor.

What it measures. One small-but-real model — a ResNet-style CNN at 128x128
(stem, three stages of two residual blocks with BatchNorm, 32-64-128 channels,
global average pooling, ten classes; about 1 GFLOP per image) — is built once,
saved as ``.keras`` and loaded in one fresh process per backend
(``KERAS_BACKEND=tensorflow``, ``jax``, ``torch``). In each process, a batch of
8 images goes through interleaved rounds (each round runs every contender once,
order rotated; ``benchmarks/harness.py``) of:

- the backend's own forward pass, compiled where the backend compiles
  (TensorFlow: ``tf.function``, plain and XLA; JAX: ``jax.jit`` of
  ``model.stateless_call``; PyTorch: eager under ``torch.no_grad``);
- hand-written floors with the backend's own tools, each given the NumPy batch
  (as kerasxai is: on a GPU, copying it to the device is part of the job) and
  returning its gradients to the host — *layer*: activations and gradient at the explained
  layer (``stage3_block2_out``); *input*: gradient at the input; *both*: the
  two from one backward pass (what ``explain`` with CAMs and saliency needs):
  TensorFlow: ``tf.function`` (plain and XLA) + ``GradientTape``, on
  ``keras.Model(inputs, [layer.output, outputs])``; JAX: ``jax.jit`` of
  ``stateless_call`` with ``jax.grad`` / ``jax.vjp``, the model split at the
  layer into two ``keras.Model`` s; PyTorch: eager forward + ``torch.autograd.grad``,
  both on the two-output model and with the model split at the layer (the part
  below the layer under ``torch.no_grad``, so nothing there is recorded);
- kerasxai's ``gradcam``, ``saliency`` and ``explain`` with gradcam,
  gradcam_plus_plus, xgradcam, layercam and saliency (on TensorFlow after
  its automatic XLA choice is made; the table says which).

Each kerasxai row is printed as a multiple of the backend's faster forward
pass and of its reference floor — the fastest (median, by the same clock)
variant of the matching floor (Grad-CAM: layer; saliency: input; explain:
both) — as per-round ratios, median (min–max), on the process's CPU time (the
verdict) and on wall time. Every backend runs one thread by default
(``--threads``): on a 2-core machine that other jobs keep busy, PyTorch's two
OpenMP threads wait on each other and its times swing 4x; with one thread,
CPU and wall time agree and ratios repeat to about +-2 %. Target: kerasxai
<= 1.05 x the floor on each backend. The maps of each backend are compared
with TensorFlow's (max absolute difference of the normalised maps).

The multi-batch row. A run over many images is more than N/batch single steps: kerasxai reads and
checks the next batch on a background thread, on a GPU also copies it to the device there, and on a
GPU under JAX or PyTorch keeps two batches' steps in flight (``kerasxai.backend.set_overlap``). The
row measures that whole path: ``kerasxai.gradcam(model, images, layer=..., batch_size=32)`` over a
NumPy array of ``--multi`` images (default 512 on a GPU or TPU, 96 on a CPU to keep the run short;
``--multi 0`` skips the row; ``--multi-batch``: the batch size, 32), with the default overlap setting,
against ``floor/multi``: the backend's Grad-CAM step written by hand, run over the same batches
with the overlap written by hand the way a careful engineer would on that backend:

- the step: the backend's "layer" floor above (same model — TensorFlow and PyTorch also two-output /
  split variants, the faster one taken —, same score: the largest model output), with the Grad-CAM
  map in the same compiled function: weights = spatial mean of the gradient, ReLU of the weighted
  sum of the activations, linear upsampling to the input's size with the backend's own resize, a
  per-image min-max to [0, 1]; only the maps ``(N, H, W)`` come back, as one NumPy array.
  kerasxai's step computes the same map (from the logit: the softmax is left out) and also
  returns per-image scores, classes and finiteness / flat-map checks, which the floor leaves out.
- JAX: ``jax.device_put`` of the next batch before the current step is dispatched; a step's maps
  are read (``np.asarray``, after ``copy_to_host_async`` at its dispatch) only after the next step
  was dispatched (dispatch is asynchronous, so the device keeps computing while the host goes on).
- PyTorch: the next batch is ``torch.from_numpy`` (on CUDA pinned and copied with
  ``non_blocking=True``) before the current step runs, and a step's maps are copied to the host
  (on CUDA ``non_blocking``, then its event waited on) only once the next step was queued; on a
  CPU eager PyTorch computes as it is called, so this is the sequential loop.
- TensorFlow: the plain sequential loop (``tf.function`` converts each NumPy batch itself).

It runs in its own interleaved rounds (``--multi-rounds``, default 10), after the single-batch
ones, and is printed in a table of its own: times, and kerasxai / the faster floor variant as
per-round ratios on CPU and on wall time. Target: <= 1.05 x the floor, on every backend, on a CPU
(verdict on CPU time) and on a GPU (verdict on wall time: there the overlap is the point).

On a GPU, read the wall-clock columns (CPU time then counts the host's waiting) and pass
``--threads 0``. On a machine without TensorFlow the model is built under the first backend asked
for (the same seeded architecture; the maps are then not compared with TensorFlow's).
``benchmarks/gpu.sh`` runs the GPU rows of ``docs/backends.md`` (JAX and PyTorch, 8 x 128² and
32 x 224²) in one go.

    python benchmarks/bench_backends.py                   # about 5-7 minutes on a 2-core CPU
    python benchmarks/bench_backends.py --backends jax,torch --rounds 30 --threads 0 --multi 512
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
LAYER = "stage3_block2_out"
EXPLAIN = ("gradcam", "gradcam_plus_plus", "xgradcam", "layercam", "saliency")
ROWS = {"gradcam": "layer", "saliency": "input", "explain(5)": "both"}
MULTI = "multi gradcam"  # the multi-batch row: kerasxai.gradcam over N images, batch_size=--multi-batch
MULTI_GPU, MULTI_CPU = 512, 96  # --multi's default: images on a GPU (or TPU), on a CPU
TARGET = 1.05


# --------------------------------------------------------------------------- the model, built once


def build_and_save(folder: str, size: int, batch: int) -> None:
    """The ResNet-style model (seeded), saved as ``model.keras``, and the images as ``images.npy``."""
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(0)

    def conv_bn(x, filters, name, strides=1, kernel=3):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    # Every layer named, as in keras.applications: kerasxai's probe adds an auto-named op to the
    # graph, which clashes with an auto-named layer ("add") of a model loaded in a fresh process.
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.ReLU(name="stem_relu")(conv_bn(inputs, 32, "stem", strides=2))
    for stage, (filters, stride) in enumerate([(32, 1), (64, 2), (128, 2)], start=1):
        for block in (1, 2):
            s, name = (stride if block == 1 else 1), f"stage{stage}_block{block}"
            shortcut = x if s == 1 and x.shape[-1] == filters else conv_bn(x, filters, f"{name}_0", strides=s, kernel=1)
            y = layers.ReLU(name=f"{name}_1_relu")(conv_bn(x, filters, f"{name}_1", strides=s))
            y = conv_bn(y, filters, f"{name}_2")
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax", name="predictions")(x), name="small_resnet")
    # BatchNorm statistics that are not the identity, so inference differs from training
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.moving_mean.assign(np.random.default_rng(1).normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(np.random.default_rng(2).uniform(0.5, 1.5, layer.moving_variance.shape))
    model.save(os.path.join(folder, "model.keras"))
    x = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype("float32")
    np.save(os.path.join(folder, "images.npy"), x)


# --------------------------------------------------------------------------- floors, one set per backend


def split(model):
    """``(base, head)``: the model cut at the explained layer into two Keras models sharing its layers."""
    import keras

    layer = model.get_layer(LAYER)
    return keras.Model(model.input, layer.output), keras.Model(layer.output, model.output)


def tensorflow_floors(model, x):
    return harness.tensorflow_floors(model, LAYER, {"": (("forward", "layer", "input", "both"), x)}, host=True)


def jax_floors(model, x):
    import jax
    import jax.numpy as jnp

    base, head = split(model)

    def values(m):
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    def run(m, params, inputs):
        out, _ = m.stateless_call(*params, inputs, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    def score_of(params, y_fn):
        return lambda inputs: jnp.sum(jnp.max(run(y_fn, params, inputs), axis=-1))

    @jax.jit
    def forward(p, inputs):
        return run(model, p, inputs)

    @jax.jit
    def layer(pb, ph, inputs):
        a = run(base, pb, inputs)
        return a, jax.grad(score_of(ph, head))(a)

    @jax.jit
    def input_(p, inputs):
        return jax.grad(score_of(p, model))(inputs)

    @jax.jit
    def both(pb, ph, inputs):
        a, back = jax.vjp(lambda i: run(base, pb, i), inputs)
        score, head_back = jax.vjp(score_of(ph, head), a)
        (ga,) = head_back(jnp.ones_like(score))
        (gx,) = back(ga)
        return a, ga, gx

    host = jax.device_get  # every output's copy to the host started at once
    # The NumPy batch goes in as it is (jit copies it to the device, as it must for a user's images), and
    # the variables' current values are read at every call, as kerasxai's JAX steps do.
    return {
        "forward/jit": lambda: host(forward(values(model), x)),
        "layer/jit": lambda: host(layer(values(base), values(head), x)),
        "input/jit": lambda: host(input_(values(model), x)),
        "both/jit": lambda: host(both(values(base), values(head), x)),
    }


def torch_floors(model, x):
    import keras
    import torch

    base, head = split(model)
    sub = keras.Model(model.input, [model.get_layer(LAYER).output, model.output])
    xt = torch.from_numpy(x)

    def score(y):
        return y.max(dim=-1).values.sum()

    def host(*ts):
        return [t.detach().cpu().numpy() for t in ts]

    def forward():
        with torch.no_grad():
            return host(model(xt, training=False))

    def layer_two_outputs():  # the natural one: weights require grad, so the whole forward is recorded
        a, y = sub(xt, training=False)
        return host(a, *torch.autograd.grad(score(y), a))

    def layer_split():  # nothing below the layer recorded
        with torch.no_grad():
            a = base(xt, training=False)
        a.requires_grad_(True)
        return host(a, *torch.autograd.grad(score(head(a, training=False)), a))

    def input_():
        xi = xt.clone().requires_grad_(True)
        return host(*torch.autograd.grad(score(model(xi, training=False)), xi))

    def both():
        xi = xt.clone().requires_grad_(True)
        a = base(xi, training=False)
        return host(a, *torch.autograd.grad(score(head(a, training=False)), [a, xi]))

    return {"forward/eager": forward, "layer/two-output": layer_two_outputs, "layer/split": layer_split,
            "input/eager": input_, "both/eager": both}


# --------------------------------------------------------------------------- the multi-batch floors
# Grad-CAM over N images in batches, the overlap of consecutive batches written by hand. Each floor's step is
# the backend's "layer" floor (the same model, split or two-output, the same score: the largest output) with
# the Grad-CAM map computed in the same compiled function: weights = spatial mean of the gradient, ReLU of the
# weighted sum of the activations, linear upsampling to the input's size (the backend's own resize) and a
# per-image min-max to [0, 1]. Only the maps come back, as one (N, H, W) NumPy array.


def batch_starts(n: int, batch: int) -> list:
    return list(range(0, n, batch))


def tensorflow_multi(model, xs, batch):
    """TensorFlow: a plain loop (the ``tf.function`` converts each NumPy batch itself), plain and XLA."""
    import keras
    import numpy as np
    import tensorflow as tf

    sub = keras.Model(model.input, [model.get_layer(LAYER).output, model.output])
    size = xs.shape[1:3]

    def cam(t):
        with tf.GradientTape() as tape:
            a, y = sub(t, training=False)
            score = tf.reduce_max(y, axis=-1)
        g = tape.gradient(score, a)
        m = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(g, axis=(1, 2), keepdims=True) * a, axis=-1))
        m = tf.image.resize(m[..., None], size, method="bilinear")[..., 0]
        low = tf.reduce_min(m, axis=(1, 2), keepdims=True)
        spread = tf.reduce_max(m, axis=(1, 2), keepdims=True) - low
        return (m - low) / tf.where(spread > 0, spread, tf.ones_like(spread))

    def over(step):
        return lambda: np.concatenate([step(xs[s:s + batch]).numpy() for s in batch_starts(len(xs), batch)])

    return {f"multi/{mode}": over(tf.function(cam, jit_compile=jit, autograph=False))
            for mode, jit in (("plain", False), ("xla", True))}


def jax_multi(model, xs, batch):
    """JAX: the next batch's ``jax.device_put`` is started before the current step is dispatched, and a
    step's maps are read (``np.asarray``, after ``copy_to_host_async`` at its dispatch) only once the next
    step has been dispatched: dispatch is asynchronous, so the device computes while the host goes on."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    base, head = split(model)
    size = xs.shape[1:3]

    def values(m):
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    def run(m, params, inputs):
        out, _ = m.stateless_call(*params, inputs, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    @jax.jit
    def cam(pb, ph, inputs):
        a = run(base, pb, inputs)
        g = jax.grad(lambda act: jnp.sum(jnp.max(run(head, ph, act), axis=-1)))(a)
        m = jax.nn.relu(jnp.sum(jnp.mean(g, axis=(1, 2), keepdims=True) * a, axis=-1))
        m = jax.image.resize(m, (m.shape[0], *size), method="linear")
        low = jnp.min(m, axis=(1, 2), keepdims=True)
        spread = jnp.max(m, axis=(1, 2), keepdims=True) - low
        return (m - low) / jnp.where(spread > 0, spread, 1.0)

    def multi():
        pb, ph = values(base), values(head)
        starts = batch_starts(len(xs), batch)
        maps, previous = [], None
        ahead = jax.device_put(xs[0:batch])
        for s in starts:
            current = ahead
            if s + batch < len(xs):
                ahead = jax.device_put(xs[s + batch:s + 2 * batch])
            out = cam(pb, ph, current)
            out.copy_to_host_async()
            if previous is not None:
                maps.append(np.asarray(previous))
            previous = out
        maps.append(np.asarray(previous))
        return np.concatenate(maps)

    return {"multi/jit": multi}


def torch_multi(model, xs, batch):
    """PyTorch: the next batch is a ``torch.from_numpy`` view (on CUDA: pinned and copied with
    ``non_blocking=True``) made before the current step runs, and a step's maps are copied to the host
    (on CUDA: ``non_blocking``, a recorded event waited on) only after the next step was queued. On a CPU
    eager PyTorch computes as it is called: this is the sequential loop."""
    import keras
    import numpy as np
    import torch
    import torch.nn.functional as F

    base, head = split(model)
    sub = keras.Model(model.input, [model.get_layer(LAYER).output, model.output])
    size = tuple(xs.shape[1:3])
    device = model.weights[0].value.device
    cuda = device.type == "cuda"

    def score(y):
        return y.max(dim=-1).values.sum()

    def finish(a, g):
        with torch.no_grad():
            m = torch.relu((g.mean(dim=(1, 2), keepdim=True) * a.detach()).sum(dim=-1))
            m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            low = m.amin(dim=(1, 2), keepdim=True)
            spread = m.amax(dim=(1, 2), keepdim=True) - low
            return (m - low) / torch.where(spread > 0, spread, torch.ones_like(spread))

    def two_outputs(xt):
        a, y = sub(xt, training=False)
        return finish(a, *torch.autograd.grad(score(y), a))

    def split_step(xt):
        with torch.no_grad():
            a = base(xt, training=False)
        a.requires_grad_(True)
        return finish(a, *torch.autograd.grad(score(head(a, training=False)), a))

    def put(s):
        t = torch.from_numpy(xs[s:s + batch])
        return t.pin_memory().to(device, non_blocking=True) if cuda else t

    def over(step):
        def multi():
            maps, previous = [], None
            ahead = put(0)
            for s in batch_starts(len(xs), batch):
                current = ahead
                if s + batch < len(xs):
                    ahead = put(s + batch)
                out = step(current)
                event = None
                if cuda:
                    out = out.to("cpu", non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                if previous is not None:
                    maps.append(_torch_host(*previous))
                previous = (out, event)
            maps.append(_torch_host(*previous))
            return np.concatenate(maps)

        return multi

    return {"multi/two-output": over(two_outputs), "multi/split": over(split_step)}


def _torch_host(tensor, event):
    if event is not None:
        event.synchronize()
    return tensor.numpy()


# --------------------------------------------------------------------------- one backend, in its own process


def kerasxai_calls(model, x):
    """The calls into kerasxai measured here."""
    import kerasxai

    return {
        "gradcam": lambda: kerasxai.gradcam(model, x, layer=LAYER),
        "saliency": lambda: kerasxai.saliency(model, x),
        "explain(5)": lambda: kerasxai.explain(model, x, methods=EXPLAIN, layer=LAYER),
    }


def child(backend: str, folder: str, rounds: int, multi=None, multi_batch: int = 32, multi_rounds: int = 10) -> None:
    harness.quiet_tensorflow()
    import keras
    import numpy as np

    if keras.backend.backend() != backend:
        raise SystemExit(f"KERAS_BACKEND is {keras.backend.backend()}, expected {backend}")
    if backend == "torch" and os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    import kerasxai

    model = keras.saving.load_model(os.path.join(folder, "model.keras"))
    x = np.load(os.path.join(folder, "images.npy"))
    contenders = {"tensorflow": tensorflow_floors, "jax": jax_floors, "torch": torch_floors}[backend](model, x)
    for fn in contenders.values():
        fn()
        fn()
    chosen = {}
    ours = kerasxai_calls(model, x)
    maps = {}
    for row, fn in ours.items():
        if backend == "tensorflow":
            chosen[row] = harness.warm_up_automatic(model, fn)
        for _ in range(2):
            out = fn()
        maps.update({f"{row}:{k}": v for k, v in out.items()} if isinstance(out, dict) else {row: out})
        contenders[f"kerasxai/{row}"] = fn
    result = harness.interleaved(contenders, rounds)

    accelerated = kerasxai.backend.accelerated()
    n = multi if multi is not None else (MULTI_GPU if accelerated else MULTI_CPU)
    multi_result = None
    if n > 0:
        # the same images on every backend (seeded), so the maps compare with TensorFlow's
        xs = np.random.default_rng(3).uniform(0, 1, (n, *x.shape[1:])).astype("float32")
        floors = {"tensorflow": tensorflow_multi, "jax": jax_multi, "torch": torch_multi}[backend](model, xs, multi_batch)

        def ours_multi():
            return kerasxai.gradcam(model, xs, layer=LAYER, batch_size=multi_batch)

        if backend == "tensorflow":
            chosen[MULTI] = harness.warm_up_automatic(model, ours_multi)
        for fn in floors.values():
            fn()
            fn()
        for _ in range(2):
            maps[MULTI] = ours_multi()
        multi_result = harness.interleaved({**floors, f"kerasxai/{MULTI}": ours_multi}, multi_rounds)
    np.savez(os.path.join(folder, f"maps_{backend}.npz"), **maps)
    harness.emit({"backend": backend, "version": _version(backend), "rounds": result, "chosen": chosen,
                  "accelerated": accelerated, "multi": {"images": n, "batch": multi_batch, "rounds": multi_result}})


def _version(backend):
    import keras

    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return f"Keras {keras.__version__}, {module} {__import__(module).__version__}"


# --------------------------------------------------------------------------- the parent: one table


def report(results: dict, folder: str) -> str:
    import numpy as np

    reference_maps = None
    if "tensorflow" in results and os.path.exists(os.path.join(folder, "maps_tensorflow.npz")):
        reference_maps = dict(np.load(os.path.join(folder, "maps_tensorflow.npz")))
    rows, lines = [], []
    for backend, res in results.items():
        if "error" in res:
            rows.append([backend, "failed: " + res["error"][:150]] + [""] * 9)
            continue
        cpu, wall = res["rounds"]["cpu"], res["rounds"]["wall"]
        names = list(cpu[0])
        forwards = [n for n in names if n.startswith("forward/")]
        fwd_cpu, fwd_wall = harness.faster(cpu, *forwards), harness.faster(wall, *forwards)
        maps = dict(np.load(os.path.join(folder, f"maps_{backend}.npz")))
        lines.append(f"{backend} ({res['version']}): forward {fwd_wall.split('/')[1]} "
                     f"{harness.times_of(wall, fwd_wall).text(3)} s wall, {harness.times_of(cpu, fwd_cpu).text(3)} s CPU")
        for row, family in ROWS.items():
            variants = [n for n in names if n.startswith(f"{family}/")]
            floor_cpu, floor_wall = harness.faster(cpu, *variants), harness.faster(wall, *variants)
            key = f"kerasxai/{row}"
            ratio = harness.ratios(cpu, key, floor_cpu)
            diff = "–"
            if reference_maps is not None:
                keys = [k for k in maps if k == row or k.startswith(f"{row}:")]
                diff = f"{max(float(np.max(np.abs(maps[k] - reference_maps[k]))) for k in keys):.1e}"
            rows.append([backend, row, harness.times_of(wall, key).text(3),
                         harness.ratios(cpu, key, fwd_cpu).text(),
                         f"{floor_cpu.split('/')[1]}: " + harness.ratios(cpu, floor_cpu, fwd_cpu).text(),
                         ratio.text(), f"{floor_wall.split('/')[1]}: " + harness.ratios(wall, key, floor_wall).text(),
                         f"{TARGET:.2f}", harness.verdict(ratio.median, TARGET), diff, res["chosen"].get(row, "")])
    headers = ["backend", "method", "kerasxai s (wall)", "kerasxai x fwd (CPU)", "floor x fwd (CPU)",
               "kerasxai x floor (CPU)", "kerasxai x floor (wall)", "target", "", "max |map - TF map|",
               "TF: automatic choice"]
    return "\n".join(lines) + "\n\n" + harness.table(headers, rows) + report_multi(results, folder, reference_maps)


def report_multi(results: dict, folder: str, reference_maps) -> str:
    """The multi-batch rows: kerasxai's gradcam over N images against the floor with the overlap by hand."""
    import numpy as np

    rows = []
    for backend, res in results.items():
        multi = res.get("multi") or {}
        if "error" in res or not multi.get("rounds"):
            continue
        cpu, wall = multi["rounds"]["cpu"], multi["rounds"]["wall"]
        variants = [n for n in cpu[0] if n.startswith("multi/")]
        floor_cpu, floor_wall = harness.faster(cpu, *variants), harness.faster(wall, *variants)
        key = f"kerasxai/{MULTI}"
        ratio_cpu, ratio_wall = harness.ratios(cpu, key, floor_cpu), harness.ratios(wall, key, floor_wall)
        clock, ratio = ("wall", ratio_wall) if res.get("accelerated") else ("CPU", ratio_cpu)
        diff = "–"
        maps = dict(np.load(os.path.join(folder, f"maps_{backend}.npz")))
        if reference_maps is not None and MULTI in reference_maps and MULTI in maps \
                and reference_maps[MULTI].shape == maps[MULTI].shape:
            diff = f"{float(np.max(np.abs(maps[MULTI] - reference_maps[MULTI]))):.1e}"
        rows.append([backend, f"gradcam, {multi['images']} images, batch {multi['batch']}",
                     harness.times_of(wall, key).text(3), harness.times_of(cpu, key).text(3),
                     f"{floor_wall.split('/')[1]}: {harness.times_of(wall, floor_wall).text(3)}",
                     f"{floor_cpu.split('/')[1]}: {ratio_cpu.text()}", f"{floor_wall.split('/')[1]}: {ratio_wall.text()}",
                     f"{TARGET:.2f}", f"{harness.verdict(ratio.median, TARGET)} ({clock})", len(cpu), diff,
                     res["chosen"].get(MULTI, "")])
    if not rows:
        return ""
    headers = ["backend", "multi-batch row", "kerasxai s (wall)", "kerasxai s (CPU)", "floor s (wall)",
               "kerasxai x floor (CPU)", "kerasxai x floor (wall)", "target", "", "rounds", "max |map - TF map|",
               "TF: automatic choice"]
    return ("\n\nMulti-batch: kerasxai.gradcam(model, images, layer, batch_size) over all the images against the "
            "backend's layer floor + the Grad-CAM map, over the same batches with the overlap written by hand "
            "(verdict: CPU time on a CPU, wall time on a GPU)\n\n" + harness.table(headers, rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per backend (0: each library's default). 1, the default, gives steady "
                             "ratios on a machine other jobs keep busy: with 2 threads there, PyTorch's OpenMP "
                             "threads wait on each other and its times swing 4x")
    parser.add_argument("--multi", type=int, default=None,
                        help=f"images of the multi-batch row (default {MULTI_GPU} on a GPU or TPU, {MULTI_CPU} on a "
                             "CPU; 0 skips the row)")
    parser.add_argument("--multi-batch", type=int, default=32, help="batch size of the multi-batch row")
    parser.add_argument("--multi-rounds", type=int, default=10, help="interleaved rounds of the multi-batch row")
    parser.add_argument("--build", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        build_and_save(args.build[0], int(args.build[1]), int(args.build[2]))
        harness.emit({"built": True})
        return
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.multi, args.multi_batch, args.multi_rounds)
        return
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}: {', '.join(BACKENDS)}")
    print(f"# kerasxai on every Keras backend: small ResNet-style CNN, batch {args.batch}, {args.size}x{args.size}, "
          f"layer {LAYER}, {args.rounds} interleaved rounds per backend, "
          f"{args.threads or 'default'} thread(s); multi-batch row: "
          f"{'skipped' if args.multi == 0 else (f'{args.multi} images' if args.multi else f'{MULTI_GPU} images on a GPU, {MULTI_CPU} on a CPU')}"
          f"{'' if args.multi == 0 else f', batch {args.multi_batch}, {args.multi_rounds} rounds'}"
          f"\n{harness.machine_line()}")
    folder = tempfile.mkdtemp(prefix="kerasxai-bench-backends-")
    script = os.path.abspath(__file__)
    try:
        # Built under TensorFlow (its maps are the reference); on a machine without it (a GPU machine with
        # JAX and PyTorch only), under the first backend asked for: the same seeded architecture.
        import importlib.util

        builder = "tensorflow" if importlib.util.find_spec("tensorflow") else backends[0]
        built = harness.run_fresh([script, "--build", folder, str(args.size), str(args.batch)],
                                  env={"KERAS_BACKEND": builder})
        if "error" in built:
            raise SystemExit(f"building the model failed: {built['error']}")
        results = {}
        for b in backends:
            print(f"# {b} ...", file=sys.stderr, flush=True)
            multi = [] if args.multi is None else ["--multi", str(args.multi)]
            results[b] = harness.run_fresh([script, "--child", b, folder, str(args.rounds), *multi,
                                            "--multi-batch", str(args.multi_batch),
                                            "--multi-rounds", str(args.multi_rounds)],
                                           env={"KERAS_BACKEND": b, **harness.thread_env(args.threads)})
        print(report(results, folder))
        print("\nPer-round ratios, median (min–max), on the process's CPU time (stable on a shared machine; the "
              "verdict) and on wall time. Floors: the fastest variant (by the same clock) of the backend's own "
              "hand-written step (TF: plain or XLA tf.function; PyTorch: two-output or split model); "
              "'fwd': the backend's faster forward pass.")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
