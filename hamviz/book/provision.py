"""Everything a build checks and fetches before any chapter runs (:func:`prepare`): the profile, the notebooks'
parameters, the data and the pretrained weights on this machine -- downloaded once where they are missing and
downloads are allowed (:func:`provide`), else one message listing every missing piece and how to get it --, the
weights files whole, and what the chosen chapters need of the data."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DataError, HamvizError, ParamsError
from ..params import (
    DATA_FIX,
    MAIN_MODEL_CHAPTERS,
    chapter_params,
    data_problems,
    find_profile,
    load_profile,
    wanted_weights,
    weights_problems,
)
from .spec import NOTEBOOKS, Book, chapter_keys, check_notebook, discover, select

#: chapters that use the lesion masks when the profile's ``masks`` is "auto" (their lesion-contrast analyses)
MASK_CHAPTERS = ("eda", "joint")


def prepare(profile="cpu", out="book", data_dir=None, notebooks_dir=NOTEBOOKS, only=None,
            download: bool | None = False, log=print) -> Book:
    """Every check that can fail before a notebook runs: the profile against its schema, each notebook's
    parameters, what the chapters need on this machine (:func:`provide`, which downloads what is missing when
    ``download`` allows: True, False, or None for "unless $HAMVIZ_NO_DOWNLOAD"), the pretrained weights (there,
    and their files whole: :func:`check_weights_files`), the data (metadata, files, masks) and what the chosen
    chapters need of it (:func:`check_chapter_data`). Raises a HamvizError naming the problem
    (:class:`hamviz.weights.WeightsError` for a damaged weights file)."""
    from ..config import cache_dir, check_writable
    from ..data import load_ham10000
    check_writable(out, "The book's output folder", "Pass --out a folder this user can write (or create).")
    cache_dir()  # the cache must be writable too: checked here, not after a model has trained
    profile_path = find_profile(profile)
    # weights are checked below, for the chosen chapters, once provide() has fetched what it can
    params = load_profile(profile_path, {"data_dir": str(data_dir)} if data_dir else None, check_weights=False)
    specs = select(discover(notebooks_dir), only)
    if not specs:
        raise HamvizError(f"No chapter notebooks (NN_name.ipynb) in {notebooks_dir}")
    for s in specs:
        check_notebook(s)
    names = [s.name for s in specs]
    params["data_dir"] = str(provide(params, names, download, log))
    problems = weights_problems(params, names)
    if problems:
        raise ParamsError(f"Invalid parameters in {profile_path}:\n  - " + "\n  - ".join(problems))
    check_weights_files(params, names)
    ds = load_ham10000(params["data_dir"], masks=params["masks"], on_missing=params["on_missing"],
                       on_corrupt=params["on_corrupt"], on_mask_mismatch=params["on_mask_mismatch"])
    params["data_dir"] = str(ds.root)
    mismatch = list(ds.report.get("mask_mismatch", {}).values())
    if mismatch:
        print(f"[book] note: {len(mismatch)} lesion mask(s) of another geometry than their image treated as missing "
              f"(on_mask_mismatch: skip; masks: auto then runs without masks): " + "; ".join(mismatch[:3])
              + (f"; ... ({len(mismatch) - 3} more)" if len(mismatch) > 3 else ""))
    damaged = ds.report.get("damaged_files")
    if damaged:
        print(f"[book] note: {len(damaged)} damaged image file(s) left out (on_corrupt: skip): "
              + ", ".join(f"{i} ({why})" for i, why in list(damaged.items())[:5])
              + (f", ... ({len(damaged) - 5} more)" if len(damaged) > 5 else ""))
    absent = ds.report.get("missing_optional_columns")
    if absent and "eda" in names:
        log(f"[book] note: the metadata has no {', '.join(absent)} column(s): the EDA chapter skips what needs "
            f"them (demographics); every other chapter needs only lesion_id, image_id, dx")
    from ..splits import check_splittable
    for warning in check_splittable(ds.meta, params["split"]["fractions"], params["split"]["grouped"]):
        log(f"[book] warning: {warning}")
    check_chapter_data(params, ds, names)
    external = (params.get("chapters", {}).get("classifier") or {}).get("external_test")
    if external and "classifier" in names:
        from ..external import independent_of, load_isic2018, overlap_note
        # the folder, its ground truth and images, and its overlap with the data in use: checked before any training
        ext = load_isic2018(external, on_corrupt=params["on_corrupt"])
        _, overlap = independent_of(ext, ds, chapter_params(params, "classifier")["external_overlap"])
        if note := overlap_note(overlap):
            log(f"[book] note: external test set: {note}")
    return Book(Path(out).resolve(), params, specs, chapter_keys(specs, params, ds.fingerprint), ds.fingerprint)


def check_weights_files(params: dict, names) -> None:
    """Read the files of the pretrained weights the chapters ``names`` start from -- sizes and headers, nothing
    loaded (:func:`hamviz.weights.damage`: a safetensors header and its data offsets, config.json parsing, a Keras
    file's HDF5 header and md5) --, so that a truncated model.safetensors, a config.json that is not JSON or an
    empty file is named with its fix before any chapter runs, not inside one. Raises
    :class:`hamviz.weights.WeightsError` naming every damaged file."""
    from ..weights import WeightsError, damage
    problems: list[str] = []
    for where, model, weights, top in wanted_weights(params):
        if where.split(".")[1] in names:
            problem = damage(model, weights, None, top)
            if problem and problem not in problems:
                problems.append(problem)
    if len(problems) == 1:
        raise WeightsError(problems[0])
    if problems:
        raise WeightsError(f"{len(problems)} pretrained weights files are damaged; nothing was run:\n  - "
                           + "\n  - ".join(problems))


def check_chapter_data(params: dict, ds, names) -> None:
    """What the chapters ``names`` need of the data (:func:`hamviz.params.data_problems`: two classes in every split
    part for the classifier, ...), on the profile's own split, made here and saved as the chapters would make it
    (:func:`hamviz.splits.get_split`; a few seconds once, read afterwards). Raises DataError naming every problem
    before any chapter runs."""
    if not set(names) & {*MAIN_MODEL_CHAPTERS, "hypervector"}:
        return
    import warnings

    from ..registry import SPLITS
    from ..splits import get_split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes too small for every part: logged by the caller
        split = get_split(ds, params["split"]["fractions"], params["seed"], params["split"]["grouped"])
    parts = split.reindex(ds.meta["image_id"]).to_numpy()
    counts = {p: ds.meta["dx"][parts == p].value_counts().to_dict() for p in SPLITS}
    problems = data_problems(params, names, counts)
    if problems:
        raise DataError(f"The data at {ds.root} cannot give what the chosen chapters need (split "
                        f"{params['split']['fractions']}, seed {params['seed']}):\n  - " + "\n  - ".join(problems)
                        + f"\nFix: {DATA_FIX}.")


@dataclass
class _Need:
    """One thing the chapters need that is not on this machine: what it is, how to get it by hand, and whether
    (and why not) this run can download it."""
    what: str
    how: str
    fetchable: bool
    why_not: str = ""
    optional: bool = False
    data: bool = True  # data (DataError) or weights (WeightsError)


def provide(params: dict, chapters, download: bool | None = None, log=print) -> Path:
    """Make sure what ``chapters`` (names) need is on this machine before any of them runs; return the data folder.

    Data: the folder set by ``params["data_dir"]`` or $HAMVIZ_DATA is used as it is; with neither, the default data
    folder (:func:`hamviz.config.default_data_dir`), where HAM10000 -- and the lesion masks when the profile's
    ``masks`` is true, or "auto" and a chapter of :data:`MASK_CHAPTERS` runs -- are downloaded once
    (:func:`hamviz.download.download`: size, time and free space stated and checked first; from
    ``$HAMVIZ_DOWNLOAD_URL`` when set). Weights: each Keras-Hub preset the chapters ask for ("imagenet" or None)
    that is in no preset folder is fetched once into the weights cache (:func:`hamviz.weights.fetch_preset`).
    ``download``: True, False, or None ("unless $HAMVIZ_NO_DOWNLOAD"). Whether the hosts can be reached is checked
    first (a few seconds at most). Raises HamvizError, before anything is downloaded, with one message listing
    every missing piece (data, masks, weights) with its command or URL and the variables that point hamviz at
    local copies, when one of them cannot be downloaded (offline, or downloads off): a DataError when data is among
    them, else a WeightsError; DataError / WeightsError when a download fails or the disk is too full."""
    from .. import config
    from .. import download as dl
    from .. import weights as w
    from ..registry import HUB_BACKBONES
    allowed = config.downloads_allowed(download)
    configured = config.configured_data_dir(params.get("data_dir"))
    data = configured if configured is not None else config.default_data_dir()
    items, needs = _data_needs(params, chapters, configured, data)
    presets = _preset_needs(params, chapters)
    keras_files = _keras_needs(params, chapters)
    if not (items or presets or needs or keras_files):
        if configured is None:
            log(f"[book] data: {data} (the default data folder, downloaded earlier)")
        return data
    base_url = os.environ.get(config.DOWNLOAD_URL_ENV) or None
    data_ok = False
    if items:
        hosts = dl.hosts(items, base_url)
        data_ok = allowed and dl.online(items, base_url)
        needs += _data_pieces(items, data, params["masks"] is True, data_ok, _why_not(allowed, hosts))
    for backbone, where in presets.items():
        host = w.hub_host(HUB_BACKBONES[backbone][1])
        needs.append(_Need(f"{backbone} pretrained weights (Keras-Hub preset {HUB_BACKBONES[backbone][1]}, about "
                           f"{w.PRESET_MB.get(backbone, '?')} MB; for {', '.join(where)})",
                           w.how_to_get(backbone), allowed and w.reachable(host), _why_not(allowed, [host]),
                           data=False))
    keras_host = "storage.googleapis.com"
    for (backbone, top), where in keras_files.items():
        fname = w.keras_weights_file(backbone, None, top)[0]
        needs.append(_Need(f"{backbone} ImageNet weights ({fname}; for {', '.join(where)})",
                           w.how_to_get_keras(backbone, None, top).rstrip("."), allowed and w.reachable(keras_host),
                           _why_not(allowed, [keras_host]), data=False))
    blocking = [n for n in needs if not n.fetchable and not n.optional]
    if blocking:
        raise (DataError if any(n.data for n in blocking) else w.WeightsError)(
            _missing_message(needs, allowed, params.get("_source") or params.get("profile")))
    for backbone in presets:
        w.fetch_preset(backbone, log=log)
    for backbone, top in keras_files:  # now, not hours later when a chapter builds the model
        log(f"[book] fetching {backbone}'s ImageNet weights{' with its top' if top else ''} into the weights cache")
        w.fetch_keras_weights(backbone, top=top)
    if items and not data_ok:  # only the optional masks, and they cannot come now
        log(f"[book] note: the lesion masks are not in {data} and cannot be downloaded now "
            f"({_why_not(allowed, hosts)}): the chapters skip their lesion-contrast analyses")
    elif items:
        log(f"[book] no data location is set (--data, {config.DATA_ENV}, data_dir): downloading "
            f"{' and '.join(items)} into the default data folder {data}")
        dl.download(data, items, base_url=base_url, progress=True)
        log(f"[book] {' and '.join(items)}: in {data} now; later builds use it without downloading. To use another "
            f"copy: `hamviz book --data DIR`, `make book {config.DATA_ENV}=DIR` or `export {config.DATA_ENV}=DIR`; "
            f"to download elsewhere: `export {config.HOME_ENV}=DIR` (then DIR/ham10000); to never download: "
            f"`--no-download` or {config.NO_DOWNLOAD_ENV}=1.")
    return data


def _why_not(allowed: bool, hosts) -> str:
    return "downloads are turned off" if not allowed else f"no connection to {', '.join(hosts)}"


_ITEM_WHAT = {"ham10000": "HAM10000 images and metadata", "masks": "the HAM10000 lesion masks"}


def _data_needs(params: dict, chapters, configured: Path | None, data: Path) -> tuple[list[str], list[_Need]]:
    """(download items the default data folder lacks, pieces missing from a configured folder)."""
    from .. import config
    from ..data import MASK_DIRS
    masks = params["masks"] is True or (params["masks"] == "auto" and bool(set(chapters) & set(MASK_CHAPTERS)))
    if configured is None:
        done = config.completed_items(data)
        return [i for i in ("ham10000", "masks") if (i == "ham10000" or masks) and i not in done], []
    if not configured.is_dir():
        return [], [_Need(f"the data folder {configured} (set by --data, data_dir or {config.DATA_ENV})",
                          config.GET_DATA_HINT.rstrip("."), False, "it is set but does not exist")]
    if params["masks"] is True and not any((configured / m).is_dir() for m in MASK_DIRS):
        from ..download import how_to_get
        return [], [_Need(f"the lesion masks for {configured} (the profile says masks: true)",
                          how_to_get(["masks"], configured), False, "the book downloads only into its default "
                          "data folder")]
    return [], []


def _data_pieces(items, data: Path, masks_required: bool, ok: bool, why: str) -> list[_Need]:
    """The missing data ``items`` of the default data folder ``data`` as pieces of the book's message."""
    from .. import config
    from ..download import REGISTRY, how_to_get, item_size
    masks = "the HAM10000 lesion masks (about {:.0f} MB; the chapters' lesion-contrast analyses use them)".format(
        item_size("masks") / 1e6)
    masks_url = REGISTRY["masks"].files[0].url
    if "ham10000" not in items:
        return [_Need(masks, how_to_get(["masks"], data), ok, why, optional=not masks_required)]
    out = [_Need(f"HAM10000 images and metadata (about {item_size('ham10000') / 1e9:.1f} GB)",
                 f"{how_to_get(items, 'DIR')}, then `export {config.DATA_ENV}=DIR` (or `hamviz book --data DIR`, "
                 f"`make book {config.DATA_ENV}=DIR`, data_dir: DIR in the profile); or run `hamviz book` once "
                 f"online: it downloads into {data}", ok, why)]
    if "masks" in items:
        out.append(_Need(masks, f"`--masks` in the command above (by hand: {masks_url}, unpacked into "
                                f"DIR/HAM10000_segmentations_lesion_tschandl/)", ok, why))
    return out


def _preset_needs(params: dict, chapters) -> dict[str, list[str]]:
    """Keras-Hub backbones the chapters ask pretrained weights (or the architecture) of that are in no preset
    folder: backbone -> where in the profile."""
    from ..registry import HUB_BACKBONES
    from ..weights import local_preset
    out: dict[str, list[str]] = {}
    for where, model, weights, _ in wanted_weights(params):
        if where.split(".")[1] in chapters and model in HUB_BACKBONES and weights in (None, "imagenet") \
                and local_preset(model) is None:
            out.setdefault(model, []).append(where)
    return out


def _keras_needs(params: dict, chapters) -> dict[tuple[str, bool], list[str]]:
    """Keras-application ImageNet weight files the chapters ask for that are on this machine nowhere hamviz looks
    (:func:`hamviz.weights.local_keras_weights`): (backbone, with its fully connected top?) -> where in the
    profile."""
    from ..weights import KERAS_WEIGHTS, local_keras_weights
    out: dict[tuple[str, bool], list[str]] = {}
    for where, model, weights, top in wanted_weights(params):
        if where.split(".")[1] in chapters and model in KERAS_WEIGHTS and weights == "imagenet" \
                and local_keras_weights(model, top=top) is None:
            out.setdefault((model, top), []).append(where)
    return out


def _missing_message(needs: list[_Need], allowed: bool, profile: str | None = None) -> str:
    from .. import config
    lines = [f"  - {n.what}: not here ({'it could be downloaded now' if n.fetchable else n.why_not}). "
             f"To get it: {n.how}." for n in needs]
    weights = sum(not n.data for n in needs)
    if weights > 1 and profile:
        lines.append(f"  All the weights this profile needs in one folder, on a machine with internet: `hamviz weights "
                     f"--profile {profile} --dest WEIGHTS_DIR`, then copy WEIGHTS_DIR here and "
                     f"`export {config.WEIGHTS_ENV}=WEIGHTS_DIR`.")
    return (f"The book needs {len(needs)} thing(s) that are not on this machine; nothing was run:\n"
            + "\n".join(lines)
            + f"\nVariables that point hamviz at local copies: {config.DATA_ENV} (the HAM10000 folder), "
              f"{config.WEIGHTS_ENV} (the folder holding the preset folders), {config.HOME_ENV} (where the book "
              f"downloads: $HAMVIZ_HOME/ham10000), {config.DOWNLOAD_URL_ENV} (a mirror of the data files). "
            + ("Once online, `hamviz book` downloads them itself." if allowed else
               f"Downloads are off (`--no-download`, {config.NO_DOWNLOAD_ENV}=1, or `hamviz validate`): without "
               f"those `hamviz book` downloads what it lacks when online."))

