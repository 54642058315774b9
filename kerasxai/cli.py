"""The ``kerasxai`` command.

    kerasxai explain IMAGE_OR_DIR... --out RUN --model vgg16 --methods gradcam [--overlays] [--resume] [--ray]
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
import shutil
import sys

from kerasxai._startup import start_tensorflow

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

    Examples:
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
        import kerasxai.evaluation.synthetic  # noqa: F401  (registers the layers of kerasxai's own small ViT)

        return keras.models.load_model(spec, safe_mode=True)
    raise UserError(f"unknown model '{spec}': use one of {', '.join(ZOO)} or a path to a .keras file")


def _class_names(value):
    """``--class-names``: comma-separated names, or a text file with one name per line."""
    if not value:
        return None
    if os.path.isfile(value):
        with open(value) as fh:
            return [line.strip() for line in fh if line.strip()]
    return [name.strip() for name in value.split(",")]


def _target(value):
    if value is None or value == "label":
        return value
    if value.startswith("region:"):  # a segmenter: one class's predicted region in every image
        from kerasxai.targets import Segmentation

        try:
            return Segmentation(int(value[len("region:"):]))
        except ValueError:
            raise UserError(f"--target region:C takes a class index C. Received: {value!r}") from None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--target must be a class index, 'label', or region:C (a segmenter's class C). "
                        f"Received: {value!r}") from None


def cmd_explain(args):
    from kerasxai.folder import runner as pipeline
    from kerasxai.folder.runfolder import RunFolder
    from kerasxai.folder.sources import list_images

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1. Received: {args.batch_size}")
    target = _target(args.target)
    class_names = _class_names(args.class_names)
    try:  # a missing file, an empty folder, a folder that is not a run: said before TensorFlow starts
        list_images(args.images)
        RunFolder.check(args.out, resume=args.resume, force=args.force)
    except ValueError as err:
        raise UserError(str(err)) from None
    from kerasxai.methods.table import check_methods

    try:
        methods = check_methods([m.strip() for m in args.methods.split(",") if m.strip()], what="--methods")
    except ValueError as err:
        raise UserError(str(err)) from None
    model = load_model(args.model, args.weights)
    key = args.model.lower().replace("-", "_")
    weights = args.model if key not in ZOO else ("none" if str(args.weights).lower() == "none" else args.weights)
    fresh = not os.path.exists(args.out)  # the run folder is this command's own (an empty folder the user made is not)
    try:  # warnings are printed as one "kerasxai: warning:" line each (see main)
        meta = pipeline.explain_folder(
            model, args.images, args.out, methods=methods, target=target, layer=args.layer,
            batch_size=args.batch_size, overlays=args.overlays, resume=args.resume, class_names=class_names,
            top=args.top, weights=weights, model_name=args.model, force=args.force, progress=not args.quiet,
            ray=args.ray or args.ray_address is not None, ray_address=args.ray_address, workers=args.workers)
    except ValueError as err:
        raise UserError(str(err).splitlines()[0]) from None
    if meta["images"] == 0 and meta.get("errors"):
        first = _first_error(args.out)
        if fresh:  # nothing was explained: a folder of error rows only would be left behind
            shutil.rmtree(args.out, ignore_errors=True)
            raise UserError(f"none of the {meta['errors']} file(s) could be read{first}; no run folder was written")
        raise UserError(f"none of the {meta['errors']} file(s) could be read (see {os.path.join(args.out, 'errors.txt')})"
                        + first)
    if not args.quiet:
        errors = f", {meta['errors']} unreadable (errors.txt)" if meta.get("errors") else ""
        print(f"{meta['images']} image(s) explained{errors}: {args.out}/predictions.jsonl, maps/, images/"
              + (", overlays/" if args.overlays else "") + f"; browse them: {os.path.join(args.out, 'report.html')}")


def _first_error(out):
    from kerasxai.folder.runfolder import read_predictions

    bad = [r for r in read_predictions(out) if r.get("error")]
    return f": {bad[0]['file']} is {bad[0]['error']}" if bad else ""


def cmd_layers(args):
    import kerasxai

    model = load_model(args.model, args.weights)
    infos = kerasxai.explainable_layers(model)
    default = kerasxai.get_probe(model).layer_names[0] if infos else None
    width = max([len(i.path) for i in infos] + [4])
    kinds = max([len(i.kind) for i in infos] + [4])
    print(f"{'path':<{width}}  {'output shape':<22} kind")
    for info in infos:
        mark = "  (default)" if info.path == default else ""
        grid = f"  tokens on a {info.grid[0]}x{info.grid[1]} grid, {info.grid[2]} extra" if info.grid else ""
        kind = f"{info.kind:<{kinds}}" if any(i.grid for i in infos) else info.kind
        print(f"{info.path:<{width}}  {str(info.output_shape):<22} {kind}{grid}{mark}".rstrip())


def cmd_report(args):
    import warnings

    from kerasxai.folder.report import write_report

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = write_report(args.run_dir, out=args.out)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
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
    key = args.model.lower().replace("-", "_")
    weights = args.model if key not in ZOO else ("none" if str(args.weights).lower() == "none" else args.weights)
    if weights == "none":
        print(f"kerasxai: warning: {args.model}'s weights are random (--weights none): the images show what an "
              "untrained network responds to, not what a trained one learned.", file=sys.stderr)
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
            "model": args.model, "weights": weights, "layer": result.layer, "objective": result.objective,
            "steps": args.steps,
            "units": result.units, "activation_reached": [round(float(a), 6) for a in result.activations],
            "never_activated": result.dead, "start_activation": np.round(result.history[0], 6).tolist(),
        }, fh, indent=2)
    written.append(os.path.join(args.out, stem + ".json"))
    if not args.quiet:
        print("written: " + ", ".join(written))


def build_parser():
    parser = argparse.ArgumentParser(prog="kerasxai", description="Explain Keras image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("explain", help="explain every image in folders or files into a run folder")
    e.add_argument("images", nargs="+", help="image files or folders (class sub-folders give true labels)")
    e.add_argument("--out", default="kerasxai-out", help="the run folder (default kerasxai-out)")
    e.add_argument("--model", default="vgg16", help=f"{'|'.join(ZOO)} or PATH.keras (default vgg16)")
    e.add_argument("--weights", default="imagenet", help="imagenet (download) or none (random, offline)")
    e.add_argument("--methods", default="gradcam", help="comma-separated (default gradcam)")
    e.add_argument("--layer", default=None, help="layer to explain (default: the last spatial layer)")
    e.add_argument("--target", default=None, help="class index, 'label', or region:C for a segmenter's class C "
                   "(its predicted region in each image; default: each image's top class)")
    e.add_argument("--class-names", default=None, help="comma-separated names, or a file with one name per line")
    e.add_argument("--top", type=int, default=5, help="classes kept per image (default 5)")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--overlays", action="store_true", help="also write overlays/<id>_<method>.png")
    e.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished images")
    e.add_argument("--force", action="store_true", help="allow a non-empty --out that is not a kerasxai run")
    e.add_argument("--ray", action="store_true", help="run on Ray Data (a local Ray unless --ray-address)")
    e.add_argument("--ray-address", default=None, help="a Ray cluster's address (implies --ray)")
    e.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per GPU, else per node)")
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
            start_tensorflow()
            from kerasxai.evaluation import evaluate

            evaluate.main(argv[1:])
            return 0
        args = build_parser().parse_args(argv)
        start_tensorflow()  # after the options are read: --help needs no TensorFlow
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
