"""The ``kerasxai`` command.

    kerasxai explain IMAGE_OR_DIR... --model vgg16 --methods gradcam,saliency [--out DIR]
    kerasxai layers MODEL
    kerasxai report RUN_DIR
    kerasxai train --data-dir DIR --out RUN_DIR [...]
    kerasxai demo --out DIR
    kerasxai evaluate [--methods gradcam,saliency]
    kerasxai visualize --model vgg16 [--layer block1_conv1] [--units 0-15] [--out DIR]

``--model`` takes a ``keras.applications`` name (vgg16, resnet50, mobilenet_v2,
densenet121, inception_v3, efficientnet_b0) or a saved ``.keras`` file.
``--weights none`` builds the named models with random weights (offline).
Errors (missing file, unknown model or method) print one line and exit with
status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ZOO = {
    "vgg16": ("VGG16", 224),
    "resnet50": ("ResNet50", 224),
    "mobilenet_v2": ("MobileNetV2", 224),
    "densenet121": ("DenseNet121", 224),
    "inception_v3": ("InceptionV3", 299),
    "efficientnet_b0": ("EfficientNetB0", 224),
}


class UserError(Exception):
    """An error the user can fix: printed as one line, exit status 2."""


def load_model(spec: str, weights: str = "imagenet"):
    """A ``keras.applications`` model by name, or a saved model from a ``.keras``/``.h5`` path.

    Example:
        >>> load_model("vgg16", weights="none").name
        'vgg16'
    """
    import keras

    key = spec.lower().replace("-", "_")
    if key in ZOO:
        name, size = ZOO[key]
        w = None if str(weights).lower() == "none" else weights
        try:
            return getattr(keras.applications, name)(weights=w, input_shape=(size, size, 3))
        except Exception as err:  # e.g. no internet for the ImageNet weights
            raise UserError(f"could not build {name} with weights={weights!r}: {str(err).splitlines()[0]} "
                            "(offline? use --weights none)") from None
    if spec.endswith((".keras", ".h5")):
        if not os.path.exists(spec):
            raise UserError(f"model file not found: {spec}")
        return keras.models.load_model(spec, safe_mode=True)
    raise UserError(f"unknown model '{spec}': use one of {', '.join(ZOO)} or a path to a .keras file")


def _image_paths(items):
    from kerasxai.train import IMAGE_EXTENSIONS

    paths = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(d, f) for d, _, fs in os.walk(item) for f in fs if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise UserError(f"no images found in folder {item}")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise UserError(f"no such file or folder: {item}")
    return paths


def cmd_explain(args):
    import keras

    import kerasxai
    from kerasxai.methods.explain import METHODS

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method '{unknown[0]}': choose from {', '.join(METHODS)}")
    paths = _image_paths(args.images)
    model = load_model(args.model, args.weights)
    os.makedirs(args.out, exist_ok=True)
    class_names = args.class_names.split(",") if args.class_names else None
    bar = keras.utils.Progbar(len(paths), unit_name="image") if len(paths) > 1 and not args.quiet else None
    report = []
    for start in range(0, len(paths), args.batch_size):
        batch_paths = paths[start : start + args.batch_size]
        try:
            display, x = kerasxai.load_images(batch_paths, model)
        except (ValueError, FileNotFoundError) as err:
            raise UserError(str(err)) from None
        predictions = kerasxai.top_k(model, x, k=5, class_names=class_names)
        target = args.target if args.target is not None else [row[0][0] for row in predictions]
        try:
            maps = kerasxai.explain(model, x, methods=methods, target=target, layer=args.layer)
        except ValueError as err:
            raise UserError(str(err).splitlines()[0]) from None
        for i, path in enumerate(batch_paths):
            cls = target if isinstance(target, int) else target[i]
            prob = next((p for c, _, p in predictions[i] if c == cls), None)
            name = next((n for c, n, _ in predictions[i] if c == cls), None)
            title = f"{name or cls}" + (f": {prob:.1%}" if prob is not None else "")
            fig = kerasxai.plot_explanations(display[i : i + 1], {m: v[i : i + 1] for m, v in maps.items()}, [title])
            png = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + "_explained.png")
            fig.savefig(png, dpi=100)
            report.append({
                "image": path,
                "figure": png,
                "target": int(cls),
                "top5": [{"class": c, "name": n, "probability": round(p, 6)} for c, n, p in predictions[i]],
                "methods": methods,
            })
        if bar is not None:
            bar.update(min(start + args.batch_size, len(paths)))
    with open(os.path.join(args.out, "predictions.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    if not args.quiet:
        print(f"{len(report)} figure(s) and predictions.json written to {args.out}")


def cmd_layers(args):
    import kerasxai

    model = load_model(args.model, args.weights)
    infos = kerasxai.explainable_layers(model)
    default = kerasxai.get_probe(model).layer_names[0] if infos else None
    width = max([len(i.path) for i in infos] + [4])
    print(f"{'path':<{width}}  {'output shape':<22} kind")
    for info in infos:
        mark = "  (default)" if info.path == default else ""
        print(f"{info.path:<{width}}  {str(info.output_shape):<22} {info.kind}{mark}")


def cmd_report(args):
    import warnings

    from kerasxai.report import write_report

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = write_report(args.run_dir, out=args.out)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise UserError(str(err)) from None
    for warning in caught:
        print(f"kerasxai: warning: {warning.message}", file=sys.stderr)
    if not args.quiet:
        print(f"{path} written: open it in a browser (it works offline, next to the run's files)")


def cmd_train(argv) -> int:
    from kerasxai.train.cli import main

    return main(argv)  # its own options and one-line errors; 2 for a mistake, 130 for Ctrl-C


def cmd_demo(args):
    from kerasxai import demo

    demo.run(args.out, epochs=args.epochs)


def _parse_units(text):
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    units = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                units += list(range(low, high + 1))
            else:
                units.append(int(part))
        except ValueError:
            raise UserError(f"--units takes indices and ranges such as 0-15 or 0,3,7; got '{text}'") from None
    if not units:
        raise UserError("--units is empty")
    return units


def cmd_visualize(args):
    import warnings

    import numpy as np

    import kerasxai
    from kerasxai.visualize.probing import layer_probe

    model = load_model(args.model, args.weights)
    input_range = None
    if args.input_range:
        try:
            input_range = tuple(float(v) for v in args.input_range.split(","))
        except ValueError:
            input_range = ()
        if len(input_range) != 2:
            raise UserError(f"--input-range takes LOW,HIGH such as 0,1; got '{args.input_range}'")
    try:
        n_units = layer_probe(model, args.layer).output_shape[-1]
        units = _parse_units(args.units) if args.units else list(range(min(16, n_units)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = kerasxai.visualize_activation(
                model, args.layer, units, steps=args.steps, size=args.size, seed=args.seed,
                parameterization=args.parameterization, batch_size=args.batch_size, input_range=input_range,
                frames=24 if args.gif else 0, progress=not args.quiet,
            )
    except (ValueError, TypeError) as err:
        raise UserError(str(err).splitlines()[0]) from None
    for warning in caught:
        print(f"kerasxai: warning: {warning.message}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    if args.layer is None:
        names = args.class_names.split(",") if args.class_names else None
        fig = kerasxai.plot_class_images(result, class_names=names)
        stem = "classes"
    else:
        fig = kerasxai.plot_filters(result)
        stem = "filters_" + result.layer.replace("/", "_")
    png = os.path.join(args.out, stem + ".png")
    fig.savefig(png, dpi=100)
    written = [png]
    if args.gif:
        written.append(kerasxai.save_gif(result, os.path.join(args.out, stem + ".gif"), scale=2))
    with open(os.path.join(args.out, stem + ".json"), "w") as fh:
        json.dump({
            "model": args.model, "layer": result.layer, "objective": result.objective, "steps": args.steps,
            "units": result.units, "activation_reached": [round(float(a), 6) for a in result.activations],
            "never_activated": result.dead, "start_activation": np.round(result.history[0], 6).tolist(),
        }, fh, indent=2)
    written.append(os.path.join(args.out, stem + ".json"))
    if not args.quiet:
        print("written: " + ", ".join(written))


def build_parser():
    parser = argparse.ArgumentParser(prog="kerasxai", description="Explain Keras image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("explain", help="explain images with one or more methods, one PNG per image")
    e.add_argument("images", nargs="+", help="image files or folders")
    e.add_argument("--model", default="vgg16", help=f"{'|'.join(ZOO)} or PATH.keras (default vgg16)")
    e.add_argument("--weights", default="imagenet", help="imagenet (download) or none (random, offline)")
    e.add_argument("--methods", default="saliency,gradcam", help="comma-separated (default saliency,gradcam)")
    e.add_argument("--layer", default=None, help="layer to explain (default: the last spatial layer)")
    e.add_argument("--target", type=int, default=None, help="class index (default: each image's top class)")
    e.add_argument("--class-names", default=None, help="comma-separated names for a model's classes")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--out", default="kerasxai-out")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_explain)

    la = sub.add_parser("layers", help="list the layers that can be explained")
    la.add_argument("model", help=f"{'|'.join(ZOO)} or PATH.keras")
    la.add_argument("--weights", default="none", help="none (default; shapes only) or imagenet")
    la.set_defaults(func=cmd_layers)

    r = sub.add_parser("report", help="(re)write RUN_DIR/report.html: browse a run's explanations, offline")
    r.add_argument("run_dir", help="a folder written by kerasxai explain (predictions.jsonl, run.json, ...)")
    r.add_argument("--out", default=None, help="where to write the page (default RUN_DIR/report.html)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_report)

    sub.add_parser("train", help="fine-tune VGG16, or a small CNN offline, then explain (kerasxai train --help)",
                   add_help=False)
    sub.add_parser("evaluate", help="score every method on generated images with known object masks", add_help=False)

    v = sub.add_parser("visualize", help="images that maximise a layer's filters or the model's classes -> PNG grid")
    v.add_argument("--model", default="vgg16", help=f"{'|'.join(ZOO)} or PATH.keras (default vgg16)")
    v.add_argument("--weights", default="imagenet", help="imagenet (download) or none (random, offline)")
    v.add_argument("--layer", default=None, help="a conv (or Dense) layer; default: the classes (logits)")
    v.add_argument("--units", default=None, help="filters or classes, e.g. 0-15 or 1,5,9 (default: the first 16)")
    v.add_argument("--class-names", default=None, help="comma-separated names for the titles of class images")
    v.add_argument("--steps", type=int, default=256)
    v.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's input)")
    v.add_argument("--parameterization", default="fourier", choices=("fourier", "pixel"))
    v.add_argument("--input-range", default=None,
                   help="LOW,HIGH for a model fed images scaled to that range (e.g. 0,1); "
                        "default: the model family's preprocessing, or 0..255")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--batch-size", type=int, default=16)
    v.add_argument("--gif", action="store_true", help="also write the optimisation as an animated GIF")
    v.add_argument("--out", default="kerasxai-visualize")
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=cmd_visualize)

    d = sub.add_parser("demo", help="offline demo: train a small CNN on generated shapes and explain it")
    d.add_argument("--out", default="kerasxai-demo")
    d.add_argument("--epochs", type=int, default=12)
    d.set_defaults(func=cmd_demo)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"kerasxai: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _one_line_warning
    try:
        if argv[:1] == ["train"]:
            return cmd_train(argv[1:])
        if argv[:1] == ["evaluate"]:
            from kerasxai import evaluate

            evaluate.main(argv[1:])
            return 0
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as err:
        print(f"kerasxai: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"kerasxai: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
