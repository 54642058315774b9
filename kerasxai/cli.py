"""The ``kerasxai`` command.

    kerasxai explain IMAGE_OR_DIR... --out RUN --model vgg16 --methods gradcam [--overlays] [--resume] [--ray]
    kerasxai layers MODEL
    kerasxai train --data-dir DIR --out RUN_DIR [...]
    kerasxai demo --out DIR
    kerasxai evaluate [--methods gradcam,saliency]

``--model`` takes a ``keras.applications`` name (vgg16, resnet50, mobilenet_v2,
densenet121, inception_v3, efficientnet_b0) or a saved ``.keras`` file.
``--weights none`` builds the named models with random weights (offline).
Errors (missing file, unknown model or method) print one line and exit with
status 2.
"""

from __future__ import annotations

import argparse
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
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--target must be a class index or 'label'. Received: {value!r}") from None


def cmd_explain(args):
    from kerasxai import pipeline
    from kerasxai.runfolder import RunFolder
    from kerasxai.sources import list_images

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1. Received: {args.batch_size}")
    target = _target(args.target)
    class_names = _class_names(args.class_names)
    try:  # a missing file, an empty folder, a folder that is not a run: said before TensorFlow starts
        list_images(args.images)
        RunFolder.check(args.out, resume=args.resume, force=args.force)
    except ValueError as err:
        raise UserError(str(err)) from None
    from kerasxai.methods.explain import METHODS

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method '{unknown[0]}': choose from {', '.join(METHODS)}")
    model = load_model(args.model, args.weights)
    key = args.model.lower().replace("-", "_")
    weights = args.model if key not in ZOO else ("none" if str(args.weights).lower() == "none" else args.weights)
    try:  # warnings are printed as one "kerasxai: warning:" line each (see main)
        meta = pipeline.explain_folder(
            model, args.images, args.out, methods=methods, target=target, layer=args.layer,
            batch_size=args.batch_size, overlays=args.overlays, resume=args.resume, class_names=class_names,
            top=args.top, weights=weights, model_name=args.model, force=args.force, progress=not args.quiet,
            ray=args.ray or args.ray_address is not None, ray_address=args.ray_address, workers=args.workers)
    except ValueError as err:
        raise UserError(str(err).splitlines()[0]) from None
    if meta["images"] == 0 and meta.get("errors"):
        raise UserError(f"none of the {meta['errors']} file(s) could be read (see {os.path.join(args.out, 'errors.txt')})"
                        + _first_error(args.out))
    if not args.quiet:
        errors = f", {meta['errors']} unreadable (errors.txt)" if meta.get("errors") else ""
        print(f"{meta['images']} image(s) explained{errors}: {args.out}/predictions.jsonl, maps/, images/"
              + (", overlays/" if args.overlays else ""))


def _first_error(out):
    from kerasxai.runfolder import read_predictions

    bad = [r for r in read_predictions(out) if r.get("error")]
    return f": {bad[0]['file']} is {bad[0]['error']}" if bad else ""


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


def cmd_train(argv):
    from kerasxai import train

    train.main(argv)


def cmd_demo(args):
    from kerasxai import demo

    demo.run(args.out, epochs=args.epochs)


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
    e.add_argument("--target", default=None, help="class index, or 'label' (default: each image's top class)")
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

    sub.add_parser("train", help="VGG16 transfer learning (kerasxai train --help)", add_help=False)
    sub.add_parser("evaluate", help="score every method on generated images with known object masks", add_help=False)

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
            cmd_train(argv[1:])
            return 0
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
