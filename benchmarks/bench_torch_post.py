"""PyTorch: does ``torch.compile`` of a step's post-processing pay, alone and in a whole call?

On the PyTorch backend a kerasxai step is eager autograd, then ``post(aux, grads)`` runs eagerly
under ``torch.no_grad`` (:mod:`kerasxai.backend.torch`): the method's formula, linear upsampling to
the input's size, per-image min-max, the finiteness and flat-map statistics. This script measures
whether compiling that post-processing with ``torch.compile`` (Inductor, C++ code on a CPU) would
be worth it, in one fresh process per thread count (``--threads``, default 1 and 2;
``torch.set_num_threads``), the first with an empty Inductor cache. Read the CPU-time columns:
on a 2-core machine that other jobs keep busy, wall times swing, and with 2 threads OpenMP's
threads (eager's and Inductor's kernels alike) spin waiting for each other, so the 2-thread
rows swing by 10x or more there (as in ``bench_backends.py``).

1. *The post-processing alone*, as kerasxai runs it: the library's own
   ``kerasxai.methods.cams.gradient_cam_post`` (Grad-CAM) and
   ``kerasxai.methods.gradients.saliency_post``, given a ``Pass`` of torch tensors of
   realistic shapes — Grad-CAM activations and gradients (8, 8, 8, 512) -> maps (8, 128, 128)
   (VGG16's block5_conv3 at 128x128) and (32, 14, 14, 512) -> (32, 224, 224); saliency input
   gradients (8, 128, 128, 3) and (32, 224, 224, 3). Eager against ``torch.compile(fn)``
   (default mode, plus any ``--modes``) under ``torch.no_grad``, after warm-up, in
   interleaved rounds (``benchmarks/harness.py``): wall and CPU time, median (min–max), and the
   per-round ratio compiled / eager. Apart from the rounds: the first compiled call (the compile,
   Inductor cache empty), the first call again after ``torch._dynamo.reset()`` (the compile with
   the cache warm, as a later process would see it), the first call with a last, partial batch
   (N - 3 images: a recompile), the graphs and graph breaks ``torch._dynamo.explain`` finds, and
   the largest difference of every output from eager (maps: max |compiled - eager|; boolean and
   integer outputs: the number of entries that differ). A compile that fails is reported with
   its error, verbatim (Inductor needs a C++ compiler: the header says which it found).
2. *The whole call*: kerasxai's ``gradcam`` and ``saliency`` on VGG16 (``weights=None``,
   128x128, batch 8) and on ``bench_backends.py``'s small ResNet-style CNN (128x128, batch 8,
   layer ``stage3_block2_out``): the public call, and the same probe's step with the library's
   post-processing (eager) and with it compiled, in interleaved rounds. Inside both steps the
   post-processing is timed on its own (``timed_post``: on a CPU every PyTorch operation is done
   when it returns), so its share of the step and of the same round's public call is measured
   per call -- the most compiling it could save -- rather than read off the difference of two
   whole steps, whose round-to-round spread (5-10 % of a VGG16 step on a shared machine) is
   larger than the post-processing itself. ``gain``: (eager post - compiled post) / call. The
   compiled post is one function for every model, as it would be in the library, so the second
   model's first call may recompile it for new shapes (its first compiled step is reported).

The first process (the first ``--threads``) does everything; later ones time the
post-processing alone (first calls included; with ``--e2e-all`` also the first model's whole
calls) and share the first one's Inductor cache (where its entries apply: a kernel compiled
for another thread count is compiled again). The recompile for a partial batch and the
cache-warm compile are measured on the batch-8 cases, in the first process only (each costs
5-25 s).

Target: compile the post-processing where it saves at least 5 % of a whole call and its compile
time is paid back within a few calls, with maps equal to eager's to 1e-5; otherwise keep it eager.

    python benchmarks/bench_torch_post.py                   # about 5-6 minutes on a 2-core CPU
    python benchmarks/bench_torch_post.py --threads 1 --rounds 60 --modes default,reduce-overhead
    python benchmarks/bench_torch_post.py --no-e2e          # the post-processing alone (about 4 minutes)

Run from the repository root (kerasxai from this checkout is put on the path). Needs torch (the
CPU wheel is enough) and, for the ResNet-style model, nothing more: it is built here, seeded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RESNET_LAYER = "stage3_block2_out"  # bench_backends.py's explained layer
CASES = (  # (name, method, batch, layer grid (or None for saliency), channels, image size)
    ("gradcam 8x(8,8,512) -> 8x128x128", "gradcam", 8, 8, 512, 128),
    ("gradcam 32x(14,14,512) -> 32x224x224", "gradcam", 32, 14, 512, 224),
    ("saliency 8x(128,128,3) -> 8x128x128", "saliency", 8, None, 3, 128),
    ("saliency 32x(224,224,3) -> 32x224x224", "saliency", 32, None, 3, 224),
)
PARTIAL = 3  # the last batch of a call: N - 3 images
TARGET_GAIN = 0.05


# --------------------------------------------------------------------------- the post-processing, as kerasxai runs it


def gradcam_post_tensors(activations, gradients, logits, scores, classes, inputs):
    """Grad-CAM's post-processing of one step (kerasxai's own function), from tensors."""
    from kerasxai.methods import cams
    from kerasxai.probe.probe import Pass

    return cams.gradient_cam_post(Pass([activations], [gradients], None, logits, scores, classes, inputs),
                                  (("gradcam", cams.gradcam_formula),))


def saliency_post_tensors(input_gradient, logits, scores, classes, inputs):
    """Saliency's post-processing of one step (kerasxai's own function), from tensors."""
    from kerasxai.methods import gradients
    from kerasxai.probe.probe import Pass

    return gradients.saliency_post(Pass([], [], input_gradient, logits, scores, classes, inputs))


POSTS = {"gradcam": gradcam_post_tensors, "saliency": saliency_post_tensors}


def tensors_of(p, method):
    """The tensors of a ``Pass`` that a method's post-processing reads, in ``POSTS``' order."""
    if method == "gradcam":
        return (p.activations[0], p.gradients[0], p.logits, p.scores, p.classes, p.inputs)
    return (p.input_gradient, p.logits, p.scores, p.classes, p.inputs)


def via(p, compiled, method):
    """A step's post that hands the pass's tensors to ``fn`` (a compiled post): an ``Fn`` for the probe."""
    return compiled(*tensors_of(p, method))


POST_TIMES: dict = {}  # label -> [(wall, cpu) seconds of each post-processing run inside a step]


def timed_post(p, inner, label):
    """A step's post that runs ``inner`` (kerasxai's own post, or a compiled one) and records how long it took.

    On the PyTorch backend (on a CPU) every operation is done when it returns, so this is the time the
    post-processing costs inside the step, without the noise of two whole steps' difference.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = inner(p)
    POST_TIMES.setdefault(label, []).append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def case_arguments(method, n, grid, channels, size, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1000, generator=g)
    scores, classes = logits.max(dim=-1)
    inputs = torch.rand(n, size, size, 3, generator=g)
    if method == "gradcam":
        activations = torch.relu(torch.randn(n, grid, grid, channels, generator=g))  # after a ReLU, as conv outputs
        gradients = 1e-3 * torch.randn(n, grid, grid, channels, generator=g)
        return (activations, gradients, logits, scores, classes.int(), inputs)
    return (1e-2 * torch.randn(n, size, size, 3, generator=g), logits, scores, classes.int(), inputs)


def differences(reference: dict, other: dict) -> dict:
    """``{key: max |a - b|}`` for float outputs, ``{key: number of entries that differ}`` for others."""
    import torch

    out = {}
    for key, a in reference.items():
        b = other[key]
        if torch.is_tensor(a) and a.dtype.is_floating_point:
            out[key] = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        else:
            out[key] = int((torch.as_tensor(a) != torch.as_tensor(b)).sum())
    return out


def error_text(exc: BaseException) -> str:
    """The exception as Python prints its last line(s), verbatim (Inductor's compiler errors are long)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text if len(text) <= 1500 else text[:700] + " [...] " + text[-700:]


def timed_first(fn, *args):
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def explain_graphs(fn, args) -> str:
    """Graphs and graph breaks ``torch._dynamo.explain`` finds in ``fn`` (it resets nothing else)."""
    import torch

    try:
        ex = torch._dynamo.explain(fn)(*args)
    except Exception as exc:  # noqa: BLE001 (reported, not hidden)
        return "explain failed: " + error_text(exc)[:300]
    reasons = "; ".join(sorted({str(getattr(r, "reason", r)).splitlines()[0][:120] for r in ex.break_reasons}))
    return f"{ex.graph_count} graph(s), {ex.graph_break_count} break(s)" + (f": {reasons}" if reasons else "")


# --------------------------------------------------------------------------- 1. the post-processing alone


def post_alone(modes, rounds, log, extras=True):
    import torch

    results, started = [], time.perf_counter()
    for name, method, n, grid, channels, size in CASES:
        fn = POSTS[method]
        args = case_arguments(method, n, grid, channels, size)
        partial_args = case_arguments(method, n - PARTIAL, grid, channels, size, seed=1)
        row = {"case": name, "modes": {}}
        slow_extras = extras and n == CASES[0][2]  # a recompile per case costs 5-20 s: the batch-8 cases only
        torch._dynamo.reset()
        with torch.no_grad():
            eager = fn(*args)
            row["graphs"] = explain_graphs(fn, args) if extras else "not looked at (first process only)"
            torch._dynamo.reset()
            contenders, compiled_fns = {"eager": lambda: fn(*args)}, {}
            for mode in modes:
                info = row["modes"][mode] = {}
                try:
                    compiled = torch.compile(fn) if mode == "default" else torch.compile(fn, mode=mode)
                    info["compile_s"], out = timed_first(compiled, *args)
                    info["diff"] = differences(eager, out)
                    compiled_fns[mode] = compiled
                    contenders[mode] = lambda c=compiled: c(*args)
                except Exception as exc:  # noqa: BLE001 (reported verbatim)
                    info["error"] = error_text(exc)
            for f in contenders.values():  # warm-up
                for _ in range(3):
                    f()
            row["rounds"] = harness.interleaved(contenders, rounds)
            for mode in modes if slow_extras else ():
                info = row["modes"][mode]
                if "error" in info:
                    continue
                compiled = compiled_fns[mode]
                try:  # the last batch of a call has fewer images: a recompile
                    info["partial_s"], out = timed_first(compiled, *partial_args)
                    info["partial_diff"] = differences(fn(*partial_args), out)
                    info["partial_again_s"], _ = timed_first(compiled, *partial_args)
                except Exception as exc:  # noqa: BLE001
                    info["partial_error"] = error_text(exc)
            first_mode = next((m for m in modes if "error" not in row["modes"][m]), None)
            if slow_extras and first_mode is not None:  # the compile again, Inductor's cache warm (a later process)
                torch._dynamo.reset()
                again = torch.compile(fn) if first_mode == "default" else torch.compile(fn, mode=first_mode)
                row["modes"][first_mode]["warm_compile_s"], _ = timed_first(again, *args)
        results.append(row)
        log(f"  {name}: done, {time.perf_counter() - started:.0f} s")
    torch._dynamo.reset()
    return results


# --------------------------------------------------------------------------- 2. the whole call


def build_resnet(size, batch):
    """bench_backends.py's model (seeded), built and loaded as there."""
    import keras
    import bench_backends

    folder = tempfile.mkdtemp(prefix="kerasxai-bench-torch-post-")
    try:
        bench_backends.build_and_save(folder, size, batch)
        return keras.saving.load_model(os.path.join(folder, "model.keras"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def whole_call(models, rounds, log):
    import keras
    import numpy as np
    import torch

    import kerasxai
    from kerasxai.methods import cams, gradients
    from kerasxai.probe import Fn, get_probe

    compiled = {m: torch.compile(POSTS[m]) for m in POSTS}  # one per method, for every model (as in a library)
    x = np.random.default_rng(0).uniform(0, 1, (8, 128, 128, 3)).astype("float32")
    results, started = [], time.perf_counter()
    for model_name in models:
        keras.utils.set_random_seed(0)
        if model_name == "vgg16":
            model, layer = keras.applications.VGG16(weights=None, input_shape=(128, 128, 3)), None
        else:
            model, layer = build_resnet(128, 8), RESNET_LAYER
        for method in ("gradcam", "saliency"):
            if method == "gradcam":
                probe = get_probe(model, layer, target=None)
                grads = "layers"
                post = Fn(cams.gradient_cam_post, formulas=(("gradcam", cams.gradcam_formula),), raw=False)
                call = lambda: kerasxai.gradcam(model, x, layer=layer)  # noqa: E731
            else:
                probe = get_probe(model, (), target=None)
                grads, post = "input", Fn(gradients.saliency_post, raw=False)
                call = lambda: kerasxai.saliency(model, x)  # noqa: E731
            posts = {"step": post, "compiled": Fn(via, compiled=compiled[method], method=method)}
            steps = {key: probe.step(grads, Fn(timed_post, inner=inner, label=key)) for key, inner in posts.items()}
            row = {"model": model_name, "method": method, "layer": ", ".join(map(str, probe.layer_names)) or "input"}
            contenders = {"call": call}
            for key, step in steps.items():
                contenders[key] = lambda s=step: s([x], (), None)
            call()
            eager_out = contenders["step"]()
            try:
                row["compiled_first_s"], compiled_out = timed_first(contenders["compiled"])
                row["diff"] = max(float(np.max(np.abs(eager_out[k] - compiled_out[k])))
                                  for k in eager_out if k.startswith("map"))
                flat = "flat:gradcam" if method == "gradcam" else "flat"
                row["flat_equal"] = bool(np.array_equal(eager_out[flat], compiled_out[flat]))
                contenders["compiled"]()
            except Exception as exc:  # noqa: BLE001
                row["error"] = error_text(exc)
                del contenders["compiled"]
            for times in POST_TIMES.values():
                times.clear()
            row["rounds"] = harness.interleaved(contenders, rounds)
            row["post_times"] = {key: list(POST_TIMES.get(key, ())) for key in steps}  # one per round, in order
            results.append(row)
            log(f"  {model_name} {method}: done, {time.perf_counter() - started:.0f} s")
    return results


# --------------------------------------------------------------------------- one thread count, in its own process


def child(threads, rounds, e2e_rounds, modes, models, extras):
    harness.quiet_tensorflow()
    import keras
    import torch
    import torch._inductor.config

    if keras.backend.backend() != "torch":
        raise SystemExit(f"KERAS_BACKEND is {keras.backend.backend()}, expected torch")
    torch.set_num_threads(threads)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    out = {"threads": threads, "versions": f"torch {torch.__version__}, Keras {keras.__version__}",
           "cxx": str(torch._inductor.config.cpp.cxx)}
    out["post"] = post_alone(modes, rounds, log, extras)
    out["post_s"] = time.perf_counter() - start
    out["e2e"] = whole_call(models, e2e_rounds, log) if models else []
    out["total_s"] = time.perf_counter() - start
    harness.emit(out)


# --------------------------------------------------------------------------- the parent: tables


def _ms(spread):
    return spread.text(2, 1e3)


def _diff_text(diff: dict) -> str:
    """Maps' largest difference; other float outputs' where larger; boolean and integer outputs that differ."""
    maps = [v for k, v in diff.items() if k.startswith("map")]
    text = f"{max(maps):.1e}" if maps else "–"
    floats = [f"{k} {v:.1e}" for k, v in diff.items() if not k.startswith("map") and isinstance(v, float) and v > 1e-5]
    counts = [f"{k} ({v} entries)" for k, v in diff.items() if isinstance(v, int) and v]
    return "; ".join([text] + floats + (["differ: " + ", ".join(counts)] if counts else []))


def post_table(res, modes, cold=True) -> str:
    rows = []
    for row in res["post"]:
        wall, cpu = row["rounds"]["wall"], row["rounds"]["cpu"]
        eager = harness.times_of(cpu, "eager")
        for mode in modes:
            info = row["modes"][mode]
            if "error" in info:
                rows.append([row["case"], mode, _ms(eager), "failed: " + info["error"]] + [""] * 7)
                continue
            comp = harness.times_of(cpu, mode)
            saved = eager.median - comp.median
            payback = f"{info['compile_s'] / saved:.0f}" if saved > 0 else "never"
            partial = (f"{info['partial_s']:.1f} (then {info['partial_again_s'] * 1e3:.1f} ms; "
                       f"{_diff_text(info['partial_diff'])})" if "partial_s" in info
                       else "failed: " + info["partial_error"] if "partial_error" in info else "–")
            rows.append([row["case"], mode, _ms(eager), _ms(comp), harness.ratios(cpu, mode, "eager").text(),
                         harness.ratios(wall, mode, "eager").text(), f"{info['compile_s']:.1f}",
                         f"{info['warm_compile_s']:.1f}" if "warm_compile_s" in info else "–", payback,
                         partial, _diff_text(info["diff"])])
    headers = ["post-processing", "compile mode", "eager ms (CPU)", "compiled ms (CPU)", "compiled / eager (CPU)",
               "compiled / eager (wall)", f"1st call s (compile, cache {'cold' if cold else 'shared'})",
               "compile s (cache warm)", f"calls to pay back {'cold' if cold else '1st-call'} compile",
               "partial batch: 1st call s", "max |compiled - eager|"]
    graphs = "\n".join(f"- {row['case']}: {row['graphs']}" for row in res["post"])
    return harness.table(headers, rows) + "\n\ntorch._dynamo.explain:\n" + graphs


def e2e_table(res) -> str:
    rows = []
    for row in res["e2e"]:
        wall, cpu = row["rounds"]["wall"], row["rounds"]["cpu"]
        post = {key: [t[1] for t in times] for key, times in row["post_times"].items()}  # CPU seconds, per round
        has = "compiled" in cpu[0]
        eager_post = harness.Spread(post["step"])
        share_step = harness.Spread([p / r["step"] for p, r in zip(post["step"], cpu)])
        share_call = harness.Spread([p / r["call"] for p, r in zip(post["step"], cpu)])
        if has:
            comp_post = harness.Spread(post["compiled"])
            gain = harness.Spread([(e - c) / r["call"] for e, c, r in zip(post["step"], post["compiled"], cpu)])
        rows.append([row["model"], row["method"], row["layer"],
                     harness.times_of(cpu, "call").text(3) + " / " + harness.times_of(wall, "call").text(3),
                     harness.times_of(cpu, "step").text(3), _ms(eager_post),
                     _ms(comp_post) if has else "failed: " + row["error"],
                     share_step.text(2, 100) + " %", share_call.text(2, 100) + " %",
                     (gain.text(2, 100) + " %") if has else "–",
                     harness.ratios(cpu, "compiled", "step").text(3) if has else "–",
                     f"{row['compiled_first_s']:.1f}" if has else "–",
                     (f"{row['diff']:.1e}" + ("" if row["flat_equal"] else "; flat differs")) if has else "–"])
    headers = ["model", "method", "layer", "call s (CPU / wall)", "step s (CPU)", "post ms, eager (CPU)",
               "post ms, compiled (CPU)", "post / step", "post / call", "gain / call (compiled post)",
               "step compiled / eager (CPU)", "1st compiled step s (wall)", "max |map diff|"]
    return harness.table(headers, rows)


def compiler_line() -> str:
    found = []
    for name in ("g++", "gcc", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            try:
                version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
                found.append(f"{name}: {path} ({version.splitlines()[0] if version else '?'})")
            except (OSError, subprocess.SubprocessError):
                found.append(f"{name}: {path}")
    return "C++ compilers: " + ("; ".join(found) if found else "none found (Inductor cannot compile on a CPU)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2",
                        help="thread counts, one fresh process each (torch.set_num_threads)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds of the post-processing alone")
    parser.add_argument("--e2e-rounds", type=int, default=4, help="interleaved rounds of the whole calls")
    parser.add_argument("--modes", default="default",
                        help="torch.compile modes, comma-separated: default, reduce-overhead, "
                             "max-autotune-no-cudagraphs")
    parser.add_argument("--models", default="vgg16,resnet", help="models of the whole-call part (vgg16, resnet)")
    parser.add_argument("--no-e2e", action="store_true", help="the post-processing alone")
    parser.add_argument("--e2e-all", action="store_true",
                        help="whole calls in every process (the first model), not only the first thread count's")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        threads, rounds, e2e_rounds, modes, models, extras = args.child
        child(int(threads), int(rounds), int(e2e_rounds), modes.split(","), [m for m in models.split(",") if m],
              extras == "1")
        return
    modes = [m for m in args.modes.split(",") if m]
    models = "" if args.no_e2e else args.models
    print(f"# torch.compile of kerasxai's post-processing (PyTorch backend), {args.rounds} interleaved rounds alone, "
          f"{0 if args.no_e2e else args.e2e_rounds} in whole calls\n{harness.machine_line()}\n{compiler_line()}")
    script = os.path.abspath(__file__)
    cache = tempfile.mkdtemp(prefix="kerasxai-inductor-cache-")  # empty at the start: the first compiles are cold
    try:
        run_all(args, modes, models, script, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print("\nTimes: median (min–max) over interleaved rounds, ratios per round. 'pay back': calls of the compiled "
          "post-processing whose saved CPU time equals its first-call compile (cache cold). Whole calls: 'post' is the "
          "post-processing's own CPU time inside the step (timed there, per call), as a share of that step and of the "
          "same round's public call; 'gain': (eager post - compiled post) / public call. Target: a gain of at least "
          f"{TARGET_GAIN:.0%} of a whole call for the compile to pay.")


def run_all(args, modes, models, script, cache):
    for i, threads in enumerate(int(t) for t in args.threads.split(",") if t):
        # The first process does everything; later ones (other thread counts) time the post-processing alone
        # (and, with --e2e-all, the first model's whole calls), with the first one's Inductor cache.
        extras = i == 0
        wanted = models if extras else (models.split(",")[0] if args.e2e_all else "")
        print(f"# {threads} thread(s) ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        res = harness.run_fresh([script, "--child", str(threads), str(args.rounds), str(args.e2e_rounds),
                                 ",".join(modes), wanted, "1" if extras else "0"],
                                env={"KERAS_BACKEND": "torch", "TORCHINDUCTOR_CACHE_DIR": cache,
                                     **harness.thread_env(threads)})
        print(f"\n## {threads} thread(s)" + ("" if extras else " (Inductor cache from the first process)"))
        if "error" in res:
            print(f"failed: {res['error']}")
            continue
        print(f"{res['versions']}; Inductor's C++ compiler: {res['cxx']}; process {time.perf_counter() - start:.0f} s "
              f"(post-processing part {res['post_s']:.0f} s)\n")
        print(post_table(res, modes, cold=extras))
        if res["e2e"]:
            print()
            print(e2e_table(res))


if __name__ == "__main__":
    main()
