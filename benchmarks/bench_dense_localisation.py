"""Beyond classification: do segmenter and detector explanations point at the object asked about?

What it measures. A small U-Net and a small grid detector
(:mod:`kerasxai.evaluation.scenes`) are trained on generated scenes of one disc
and one cross each (about a minute on 2 CPU cores), then every object of
``--scenes`` fresh scenes is explained:

- the U-Net with ``Segmentation(class)`` (the pixels predicted as the object's
  class — one object per class, so the object itself) and with
  ``Segmentation(class, mask=<the object's box>)``;
- the detector with ``Detection(<the object's box>, class, decode)``, and by
  D-RISE through the NMS black box (``scenes.nms_detector``), no gradient.

Methods: Grad-CAM and LayerCAM (at ``--unet-layer`` / ``--detector-layer``),
saliency, occlusion (window 8, stride 4), RISE and D-RISE (``--n`` masks each).
Each map is scored by the pointing game: the share of maps whose peak lies in the
explained object's box (``own``, higher is better), and in the *other* object's
box (``other``: lower is better; an explanation of the disc should not point at
the cross). Baselines: a map peaked at the image centre, and a random peak (the
mean share of the image the box covers). A flat map (nothing to explain: no box
matched) peaks at pixel (0, 0) and counts as a miss; the flat maps are counted.

    python benchmarks/bench_dense_localisation.py                         # 100 scenes, n=500: ~5 min on 2 cores
    python benchmarks/bench_dense_localisation.py --scenes 20 --n 200     # a quick look
"""

from __future__ import annotations

import argparse
import time
import warnings

import harness

harness.quiet_tensorflow()

import numpy as np  # noqa: E402

import kerasxai  # noqa: E402
from kerasxai.evaluation import scenes  # noqa: E402
from kerasxai.evaluation.metrics import box_masks, pointing_game  # noqa: E402
from kerasxai.targets import Detection, Segmentation  # noqa: E402


def score(maps, own, other):
    """``(own hits, other hits, flat maps)`` of ``(N, H, W)`` maps against box masks."""
    flat = int((maps.reshape(len(maps), -1).max(1) <= maps.reshape(len(maps), -1).min(1)).sum())
    return pointing_game(maps, own).mean(), pointing_game(maps, other).mean(), flat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100, help="test scenes (two objects each)")
    parser.add_argument("--train", type=int, default=2000, help="training scenes")
    parser.add_argument("--n", type=int, default=500, help="RISE and D-RISE masks per object")
    parser.add_argument("--unet-layer", default=None, help="the CAMs' layer (default: kerasxai's default layer)")
    parser.add_argument("--detector-layer", default=None, help="the CAMs' layer (default: kerasxai's default layer)")
    parser.add_argument("--batch-size", type=int, default=128, help="copies per forward pass (occlusion, RISE, D-RISE)")
    args = parser.parse_args(argv)
    print(harness.machine_line())
    started = time.perf_counter()

    train = scenes.two_object_scenes(args.train, seed=0)
    test = scenes.two_object_scenes(args.scenes, seed=1)
    t = time.perf_counter()
    unet = scenes.train_unet(train)
    seg = scenes.segmentation_scores(unet, test)
    t_unet = time.perf_counter() - t
    t = time.perf_counter()
    detector, decode = scenes.train_detector(train)
    det = scenes.detection_scores(detector, decode, test)
    t_det = time.perf_counter() - t
    print(f"U-Net: trained in {t_unet:.0f} s; on the test scenes pixel accuracy {seg['pixel_accuracy']:.4f}, IoU disc "
          f"{seg['iou']['disc']:.3f}, cross {seg['iou']['cross']:.3f}")
    print(f"detector: trained in {t_det:.0f} s; objects whose best cell has IoU >= 0.5 and the right class "
          f"{det['hit_rate']:.3f} (mean IoU {det['mean_iou']:.3f})")

    # one row per object: its image, box, class, and the other object's box
    image, which = np.divmod(np.arange(2 * len(test)), 2)
    x = test.images[image]
    classes, boxes, others = test.classes[image, which], test.boxes[image, which], test.boxes[image, 1 - which]
    size = x.shape[1:3]
    own, other = box_masks(boxes, size), box_masks(others, size)

    unet_layer = kerasxai.get_probe(unet, args.unet_layer).layer_names[0]
    detector_layer = kerasxai.get_probe(detector, args.detector_layer,
                                        target=Detection(boxes[0], int(classes[0]), decode)).layer_names[0]
    perturbation = {"batch_size": args.batch_size}
    methods = {
        "gradcam": (kerasxai.gradcam, {"layer": args.unet_layer}, {"layer": args.detector_layer}),
        "layercam": (kerasxai.layercam, {"layer": args.unet_layer}, {"layer": args.detector_layer}),
        "saliency": (kerasxai.saliency, {}, {}),
        "occlusion": (kerasxai.occlusion, perturbation, perturbation),
        f"rise (n={args.n})": (kerasxai.rise, {"n": args.n, **perturbation}, {"n": args.n, **perturbation}),
    }

    def segmentation_maps(method, options, region):
        """Segmentation targets take one class: explain the discs, then the crosses."""
        maps = np.zeros(x.shape[:3], np.float32)
        for c in (1, 2):
            pick = np.flatnonzero(classes == c)
            target = Segmentation(c) if region is None else Segmentation(c, mask=region[pick])
            maps[pick] = method(unet, x[pick], target=target, progress=False, **options)
        return maps

    rows, flats = [], {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="kerasxai")  # flat maps (nothing matched) are counted instead
        for name, (method, unet_options, det_options) in methods.items():
            cells, seconds = [name], 0.0
            for label, run in (
                ("U-Net predicted", lambda: segmentation_maps(method, unet_options, None)),
                ("U-Net box", lambda: segmentation_maps(method, unet_options, own)),
                ("detector", lambda: method(detector, x, target=Detection(boxes, classes, decode), progress=False,
                                            **det_options)),
            ):
                t = time.perf_counter()
                maps = run()
                seconds += time.perf_counter() - t
                hit, miss, flat = score(maps, own, other)
                cells.append(f"{hit:.2f} / {miss:.2f}")
                if flat:
                    flats[f"{name}, {label}"] = flat
            rows.append(cells + [f"{seconds:.0f}"])
            print(f"  {name} done ({seconds:.0f} s)")
        t = time.perf_counter()
        maps = kerasxai.drise(scenes.nms_detector(detector, decode), x, boxes, classes, n=args.n,
                              batch_size=args.batch_size, progress=False)
        hit, miss, flat = score(maps, own, other)
        if flat:
            flats["drise, detector"] = flat
        rows.append([f"drise (n={args.n}, NMS black box)", "–", "–", f"{hit:.2f} / {miss:.2f}",
                     f"{time.perf_counter() - t:.0f}"])

    centre = np.zeros(x.shape[:3], np.float32)
    centre[:, size[0] // 2, size[1] // 2] = 1
    hit, miss, _ = score(centre, own, other)
    rows.append(["baseline: peak at the centre"] + [f"{hit:.2f} / {miss:.2f}"] * 3 + ["–"])
    share, share_other = own.mean(), other.mean()
    rows.append(["baseline: random peak (box area share)"] + [f"{share:.2f} / {share_other:.2f}"] * 3 + ["–"])

    print(f"\n{len(x)} objects in {len(test)} scenes (32x32, one disc and one cross each); pointing game: share of "
          f"maps peaking in the explained object's box / in the other object's box. Grad-CAM and LayerCAM at "
          f"'{unet_layer}' (U-Net) and '{detector_layer}' (detector); occlusion window 8, stride 4.")
    print(harness.table(["method", "U-Net, Segmentation(class): own / other",
                         "U-Net, Segmentation(class, mask=box): own / other",
                         "detector, Detection(box, class): own / other", "seconds"], rows))
    if flats:
        print("flat maps (counted as misses): " + ", ".join(f"{k}: {v}" for k, v in flats.items()))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
