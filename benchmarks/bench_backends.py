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

On a GPU, read the wall-clock columns (CPU time then counts the host's waiting) and pass
``--threads 0``. The README's GPU table came from this script's per-backend processes
(``--child BACKEND FOLDER ROUNDS``) on a machine without TensorFlow, the model built here.

    python benchmarks/bench_backends.py                   # about 5 minutes on a 2-core CPU
    python benchmarks/bench_backends.py --backends jax,torch --rounds 30 --threads 0
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


# --------------------------------------------------------------------------- one backend, in its own process


def kerasxai_calls(model, x):
    """The calls into kerasxai measured here."""
    import kerasxai

    return {
        "gradcam": lambda: kerasxai.gradcam(model, x, layer=LAYER),
        "saliency": lambda: kerasxai.saliency(model, x),
        "explain(5)": lambda: kerasxai.explain(model, x, methods=EXPLAIN, layer=LAYER),
    }


def child(backend: str, folder: str, rounds: int) -> None:
    harness.quiet_tensorflow()
    import keras
    import numpy as np

    if keras.backend.backend() != backend:
        raise SystemExit(f"KERAS_BACKEND is {keras.backend.backend()}, expected {backend}")
    if backend == "torch" and os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
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
    np.savez(os.path.join(folder, f"maps_{backend}.npz"), **maps)
    result = harness.interleaved(contenders, rounds)
    harness.emit({"backend": backend, "version": _version(backend), "rounds": result, "chosen": chosen})


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
    return "\n".join(lines) + "\n\n" + harness.table(headers, rows)


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
    parser.add_argument("--build", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        build_and_save(args.build[0], int(args.build[1]), int(args.build[2]))
        harness.emit({"built": True})
        return
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}: {', '.join(BACKENDS)}")
    print(f"# kerasxai on every Keras backend: small ResNet-style CNN, batch {args.batch}, {args.size}x{args.size}, "
          f"layer {LAYER}, {args.rounds} interleaved rounds per backend, "
          f"{args.threads or 'default'} thread(s)\n{harness.machine_line()}")
    folder = tempfile.mkdtemp(prefix="kerasxai-bench-backends-")
    script = os.path.abspath(__file__)
    try:
        built = harness.run_fresh([script, "--build", folder, str(args.size), str(args.batch)],
                                  env={"KERAS_BACKEND": "tensorflow"})
        if "error" in built:
            raise SystemExit(f"building the model failed: {built['error']}")
        results = {}
        for b in backends:
            print(f"# {b} ...", file=sys.stderr, flush=True)
            results[b] = harness.run_fresh([script, "--child", b, folder, str(args.rounds)],
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
