"""Command line: ``hamviz book | validate | cache | download | weights | export | predict`` (also
``python -m hamviz``)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import HamvizError


def _book(args) -> int:
    from .book import build
    from .book.progress import BuildProgress
    from .book.spec import NOTEBOOKS
    # live bars on a terminal; plain lines in a log; nothing but the last line with --quiet
    progress = BuildProgress(live=sys.stdout.isatty(), quiet=args.quiet)
    summary = None
    try:
        summary = build(args.profile, args.out, data_dir=args.data, jobs=args.jobs, force=args.force,
                        only=args.only, notebooks_dir=args.notebooks or NOTEBOOKS,
                        download=False if args.no_download else None, progress=progress)
    finally:
        progress.close(summary)
    bad = [c for c in summary["chapters"] if c["status"] != "ok"]
    print(f"[book] {args.out}/index.html: {len(summary['chapters']) - len(bad)} chapter(s) ok"
          + (f", {len(bad)} not: " + ", ".join(f"{c['stem']} ({c['status']})" for c in bad) if bad else ""))
    return 1 if bad else 0


def _validate(args) -> int:
    from .book import prepare
    book = prepare(args.profile, "book", data_dir=args.data, download=False)  # validate never downloads
    print(f"profile {book.profile['profile']} ({book.profile['_source']}) is valid; data at "
          f"{book.profile['data_dir']} (fingerprint {book.fingerprint}); chapters: "
          + ", ".join(s.stem for s in book.chapters))
    return 0


def _cache(args) -> int:
    from .cache import build_cache
    from .data import load_ham10000
    from .params import load_profile
    p = load_profile(args.profile, {"data_dir": args.data} if args.data else None)
    ds = load_ham10000(p["data_dir"], masks=p["masks"], on_missing=p["on_missing"], on_corrupt=p["on_corrupt"],
                       on_mask_mismatch=p["on_mask_mismatch"])
    for size in args.size or [p["image_size"]]:
        t = time.time()
        c = build_cache(ds, size, mode=p["resize"], on_corrupt=p["on_corrupt"], progress=True)
        print(f"{size}x{size}: {len(c)} images {'built' if c.built else 'read'} in {time.time() - t:.1f} s"
              f" -> {c.path}" + (f"; skipped {len(c.skipped)} corrupt" if c.skipped else ""))
    return 0


def _download(args) -> int:
    from .download import run_download
    run_download(args)
    return 0


def _weights(args) -> int:
    from .config import WEIGHTS_ENV
    from .registry import HUB_BACKBONES
    from .weights import (
        KERAS_TOP_WEIGHTS,
        KERAS_WEIGHTS,
        WeightsError,
        fetch_keras_weights,
        fetch_preset,
        local_keras_weights,
        local_preset,
    )
    models = [args.model] if args.model else []
    tops = [args.model] if args.model and args.top else []
    if tops and args.model not in KERAS_TOP_WEIGHTS:
        raise WeightsError(f"--top: only {', '.join(KERAS_TOP_WEIGHTS)} has a published fully connected top, not "
                           f"{args.model}; drop --top")
    if args.profile:  # every pretrained backbone the profile's chapters ask for
        from .params import load_profile, wanted_weights
        wanted = wanted_weights(load_profile(args.profile, check_weights=False))
        models += [m for _, m, w, top in wanted if w == "imagenet" and not top]
        tops += [m for _, m, w, top in wanted if w == "imagenet" and top]
    for model in dict.fromkeys(tops):
        where = fetch_keras_weights(model, into=args.dest, top=True) if args.dest else \
            local_keras_weights(model, top=True) or fetch_keras_weights(model, top=True)
        print(f"{model}: Keras ImageNet weights with its fully connected top (md5-checked) in {where}")
    for model in dict.fromkeys(models or [next(iter(HUB_BACKBONES))]):
        if model in HUB_BACKBONES:
            where = fetch_preset(model, into=args.dest) if args.dest else local_preset(model) or fetch_preset(model)
            print(f"{model}: Keras-Hub preset in {where}")
        elif model in KERAS_WEIGHTS:
            where = fetch_keras_weights(model, into=args.dest) if args.dest else \
                local_keras_weights(model) or fetch_keras_weights(model)
            print(f"{model}: Keras ImageNet weights (md5-checked) in {where}")
    if args.dest:
        print(f"point hamviz at them with: export {WEIGHTS_ENV}={Path(args.dest).expanduser().absolute()}")
    return 0


def _export(args) -> int:
    import tempfile

    from .chapters.base import start
    from .chapters.classifier import export
    from .deploy import check_destination
    check_destination(args.dest)  # before the data and the models are read
    with tempfile.TemporaryDirectory() as tmp:
        ch = start("classifier", args.profile, data_dir=args.data, record_path=Path(tmp) / "classifier.json")
        dest = export(ch, args.dest)
    print(f"exported to {dest}: model.keras (loads with keras and keras_hub alone), preprocessing.json, "
          f"MODEL_CARD.md; score images with: hamviz predict --model {dest} --folder IMAGES --out predictions.csv")
    return 0


def _predict(args) -> int:
    from .deploy import DeployError, image_files, load_predictor, predict_table
    out = Path(args.out).expanduser()
    if out.exists() and not args.force:
        raise DeployError(f"{out} exists: pass --force to replace it, or name another --out")
    if not out.parent.is_dir():
        raise DeployError(f"the folder of --out ({out.parent}) does not exist: create it or name another --out")
    files = image_files(args.images, args.folder)
    predictor = load_predictor(args.model, resize=args.resize)
    table = predict_table(predictor, files)
    table.to_csv(out, index=False, float_format="%.6g")
    counts = table["predicted"].value_counts()
    print(f"{len(table)} image(s) scored at {predictor.image_size}x{predictor.image_size} ('{predictor.resize}'"
          f"{', with test-time flips' if predictor.tta_flips else ''}) -> {out}; predicted: "
          + ", ".join(f"{c} {k}" for c, k in counts.items()))
    return 0


def _add_model_commands(sub, profile_help: str, data_help: str) -> None:
    """The `export` and `predict` subcommands: using the trained model outside the book."""
    ex = sub.add_parser("export", help="write the profile's main model (replicate 0, trained by the book) as a "
                                       "folder that loads with keras and keras_hub alone, with its model card")
    ex.add_argument("--profile", default="cpu", help=profile_help)
    ex.add_argument("--data", help=data_help)
    ex.add_argument("--dest", required=True, help="a new (or empty) folder to write")
    ex.set_defaults(func=_export)

    pr = sub.add_parser("predict", help="class probabilities of image files (ISIC 2018 columns) from an exported "
                                        "or stored classifier, preprocessed and scored as the book scored it")
    pr.add_argument("--model", required=True, help="a folder `hamviz export` wrote, or a classifier's folder in "
                                                   "the store (<cache>/models/...)")
    pr.add_argument("images", nargs="*", help="image files (JPEG or PNG)")
    pr.add_argument("--folder", help="also every .jpg/.jpeg/.png directly in this folder")
    pr.add_argument("--out", required=True, help="the CSV to write: image, MEL, NV, BCC, AKIEC, BKL, DF, VASC, "
                                                 "predicted")
    pr.add_argument("--resize", choices=("stretch", "crop", "pad"),
                    help="how to bring images to the model's size (default: what the model records)")
    pr.add_argument("--force", action="store_true", help="replace --out if it exists")
    pr.set_defaults(func=_predict)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hamviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("book", help="build the results book (runs only what changed)")
    profile_help = "a shipped profile's name (tiny, cpu, paper) or the path of your own YAML (default: cpu)"
    data_help = "HAM10000 folder (default: the profile's data_dir, else $HAMVIZ_DATA)"
    b.add_argument("--profile", default="cpu", help=profile_help)
    b.add_argument("--out", default="book", help="output folder (default: book)")
    b.add_argument("--data", help=data_help)
    b.add_argument("--jobs", type=int, help="chapters run in parallel (default: the profile's jobs)")
    b.add_argument("--force", action="store_true", help="re-run chapters that are up to date")
    b.add_argument("--only", nargs="+", help="only these chapters (and what they depend on)")
    b.add_argument("--notebooks", help="folder of chapter notebooks (default: the repo's notebooks/)")
    b.add_argument("--quiet", action="store_true",
                   help="no progress and no table of chapters, only errors and the last line (progress bars are "
                        "shown only when stdout is a terminal; otherwise one line per chapter)")
    b.add_argument("--no-download", action="store_true",
                   help="never download missing data or weights (also: HAMVIZ_NO_DOWNLOAD=1); without it, with no "
                        "data location set, HAM10000 is downloaded once into $HAMVIZ_HOME/ham10000 (default "
                        "~/.local/share/hamviz/ham10000)")
    b.set_defaults(func=_book)

    v = sub.add_parser("validate", help="check a profile, the data and the pretrained weights' files (sizes and "
                                        "headers: a damaged preset is named) without running anything")
    v.add_argument("--profile", default="cpu", help=profile_help)
    v.add_argument("--data", help=data_help)
    v.set_defaults(func=_validate)

    c = sub.add_parser("cache", help="decode and resize the images once into the cache")
    c.add_argument("--profile", default="cpu", help=profile_help)
    c.add_argument("--data", help=data_help)
    c.add_argument("--size", type=int, nargs="+", help="edge(s) in pixels (default: the profile's)")
    c.set_defaults(func=_cache)

    try:
        from .download import add_download_arguments
    except ImportError:  # pragma: no cover
        add_download_arguments = None
    if add_download_arguments is not None:
        d = sub.add_parser("download", help="download HAM10000 (and optional extras) with checksums")
        add_download_arguments(d)
        d.set_defaults(func=_download)

    from .registry import HUB_BACKBONES
    from .weights import KERAS_WEIGHTS
    wt = sub.add_parser("weights", help="download pretrained weights (Keras-Hub presets, Keras-application ImageNet "
                                        "files) once, e.g. for a machine without internet")
    wt.add_argument("--model", choices=list(HUB_BACKBONES) + list(KERAS_WEIGHTS),
                    help=f"one backbone (default without --profile: {next(iter(HUB_BACKBONES))})")
    wt.add_argument("--top", action="store_true",
                    help="with --model: the file with the backbone's fully connected top too (head: own_top; vgg19)")
    wt.add_argument("--profile", help="every pretrained backbone this profile's chapters use (e.g. paper)")
    wt.add_argument("--dest", type=Path, help="put them in DEST (presets in DEST/<name>/, Keras files in "
                                              "DEST/keras/; then: export HAMVIZ_WEIGHTS=DEST); default: the "
                                              "weights cache, <cache>/weights")
    wt.set_defaults(func=_weights)

    _add_model_commands(sub, profile_help, data_help)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HamvizError as exc:
        print(f"hamviz: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
