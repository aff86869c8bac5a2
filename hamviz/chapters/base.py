"""What every chapter notebook does first, in one call: :func:`start`.

It loads and validates the parameter profile, seeds the random generators, makes plotly figures render in
static, offline HTML, loads the data set (checking it before any expensive work), and opens the chapter's
*record*: a small JSON file of the numbers the chapter measured, which the book's index and the tests read
(never scraped from HTML). :meth:`Chapter.view` gives the :class:`hamviz.view.PreparedView` every step works on.
"""
from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ParamsError
from ..files import write_atomic
from ..params import chapter_params, load_profile, parse_yaml, weights_problems
from ..record import jsonable, provenance
from ..view import PreparedView, prepare

RECORD_ENV = "HAMVIZ_RECORD_DIR"


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and (if imported) TensorFlow/Keras."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras
        keras.utils.set_random_seed(seed)


def offline_plotly() -> None:
    """Figures render in static HTML opened offline (the book stores plotly.js once) and keep the JupyterLab
    mimetype for live use."""
    import plotly.io as pio
    pio.renderers.default = "notebook+plotly_mimetype"


@dataclass
class Chapter:
    """A running chapter: its flat parameters (shared settings + its own section), the whole validated
    profile, its data set and its record."""

    name: str
    params: dict
    record_path: Path
    record: dict = field(default_factory=dict)
    data: object = None
    profile: dict = field(default_factory=dict)
    _views: dict = field(default_factory=dict, repr=False)

    def log(self, summary: bool = False, **values) -> None:
        """Record measured values (and write the record file at once). ``summary=True`` also puts
        them in the book's index table."""
        values = jsonable(values)
        self.record.setdefault("values", {}).update(values)
        if summary:
            self.record.setdefault("summary", {}).update(values)
        self.save()

    def log_estimate(self, name: str, value: float, low: float, high: float, summary: bool = True) -> None:
        """Record ``name`` = ``value`` with its 95 % interval (``values["summary_ci"][name]``, which the book's
        Key results box and index show beside it)."""
        cis = dict(self.record.get("values", {}).get("summary_ci") or {})
        cis[name] = {"low": low, "high": high}
        self.log(summary_ci=cis)
        self.log(summary=summary, **{name: value})

    def save(self) -> None:
        write_atomic(self.record_path, json.dumps(self.record, indent=1, sort_keys=False))

    def finish(self) -> None:
        """Mark the record complete (the book checks for it), with the chapter's training time: ``training`` =
        {"seconds": what training every model it used took, trained now or loaded from the store (another chapter's
        models too), "models": how many, "trained_now": how many this run trained, "seconds_now": what training
        those took} (from :data:`hamviz.training.TRAINED`)."""
        import sys
        trained = getattr(sys.modules.get("hamviz.training"), "TRAINED", [])
        by_key: dict = {}
        for t in trained:  # a model used twice counts once, as trained now if either use trained it
            seen = by_key.setdefault(t["key"], dict(t))
            seen["loaded"] = seen["loaded"] and t["loaded"]
        unique = by_key.values()
        self.record["training"] = {"seconds": round(sum(t["seconds"] for t in unique), 1),
                                   "models": len(unique), "trained_now": sum(not t["loaded"] for t in unique),
                                   "seconds_now": round(sum(t["seconds"] for t in unique if not t["loaded"]), 1)}
        self.record["complete"] = True
        self.save()

    def protocol_table(self):
        """This chapter's reference protocol beside this run (:func:`hamviz.protocol.protocol_table`), also
        recorded (``protocol``: setting -> row); None for a chapter without a reference protocol."""
        from ..protocol import protocol_table
        # the classifier chapter's parameters too: a setting such as tta_flips: null follows the main model
        table = protocol_table(self.name, {**self.params, "_main": self.section("classifier")})
        if table is not None:
            self.log(protocol=table.to_dict(orient="index"), protocol_source=table.attrs["source"])
        return table

    def params_table(self):
        """The chapter's parameters as a table, after its protocol table (reference | this run | why they
        differ; displayed first, so that every difference from the reference is stated above the numbers)."""
        import pandas as pd
        protocol = self.protocol_table()
        if protocol is not None:
            from IPython.display import Markdown, display
            display(Markdown(f"**Protocol** — reference: {protocol.attrs['source']}; profile "
                             f"`{self.params.get('profile', '')}`. Every difference from the reference is stated "
                             f"here, where the numbers below come from."))
            with pd.option_context("display.max_colwidth", None):  # the reasons in full, not cut at 50 characters
                display(protocol)
        rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v)
                for k, v in self.params.items() if not k.startswith("_")]
        return pd.DataFrame(rows, columns=["parameter", "value"]).set_index("parameter")

    @property
    def seeds(self) -> list[int]:
        """The training seeds of this chapter's replicates (``replicates``, top level or the chapter's own):
        seed, seed+1, ...; the split is the seed's in every replicate."""
        from ..replicates import replicate_seeds
        return replicate_seeds(self.params["seed"], self.params.get("replicates") or 1)

    def verdict(self, key: str, question: str, per_seed: dict, draws=None, *, digits: int = 1, units: str = "points",
                untested: str | None = None, **rule):
        """Decide one of the chapter's verdicts from its replicates (:func:`hamviz.replicates.decide`; ``rule``:
        null, direction, majority) and record it under ``verdicts[key]`` with its ``question`` and one-line
        ``text``. Returns the :class:`hamviz.replicates.Verdict`. An effect in "points" (a difference of two
        rates) is bounded by -100 and +100, a level in "%" by 0 and 100: the interval is cut there (``bounds`` in
        ``rule`` sets other limits). ``untested``: the question is not tested (a fixed sequence of tests
        stopped before it: the reason); its numbers are recorded and its verdict is "not settled" with that
        reason, whatever they show."""
        from ..replicates import NOT_SETTLED, decide
        rule.setdefault("bounds", {"points": (-100.0, 100.0), "%": (0.0, 100.0)}.get(units))
        v = decide(per_seed, draws, units=units, **rule)
        if untested:
            v.status, v.why = NOT_SETTLED, untested
        v.fewer = self.fewer_replicates(v.n)
        self.record.setdefault("verdicts", {})[key] = jsonable({"question": question, **v.as_dict(),
                                                                 "text": v.text(digits), "digits": digits})
        self.save()
        return v

    def fewer_replicates(self, n: int) -> str:
        """"" when ``n`` replicates are what this chapter's profile asks for (``replicates``); otherwise the label
        a verdict resting on fewer carries: "rests on 2 replicates, not the profile's 3", with the reason when it
        is the main model's own count (``chapters.classifier.main_replicates``, which every verdict pairing with
        the main model follows)."""
        asked = int(self.params.get("replicates") or 1)
        if n >= asked:
            return ""
        main = self.section("classifier").get("main_replicates")
        why = (f": the main model is trained {main} times (chapters.classifier.main_replicates)"
               if main is not None and int(main) == n else "")
        return f"rests on {n} replicate{'s' if n != 1 else ''}, not the profile's {asked}{why}"

    def answers(self):
        """The chapter's answers, one row per verdict it recorded: the question, the effect (mean over replicates)
        with its interval, each replicate's value, how many replicates agree and the verdict ("shown" / "not
        settled", and why). Also puts each verdict's line into the record's summary (the book's index and the Key
        results box), and displays a note on how a verdict is decided and a figure of every verdict with every
        replicate (:func:`hamviz.plots.verdicts_forest`). Returns the table (a pandas DataFrame
        indexed by question; empty when the chapter states no verdict)."""
        import pandas as pd
        from IPython.display import Markdown, display
        verdicts = self.record.get("verdicts", {})
        rows = []
        for v in verdicts.values():
            effect = v["text"].split(";")[0].split(", replicates")[0]
            if v.get("interval") != "replicates x lesions":  # say when an interval covers less
                effect += f" (interval over {v.get('interval')} only)"
            rows.append({"question": v["question"], "effect [interval]": effect,
                         "each replicate": ", ".join(f"seed {seed}: " + ("n/a" if x is None else
                                                     f"{float(x):+.{v.get('digits', 1)}f}")
                                                     for seed, x in v["per_seed"].items()),
                         "holds in": f"{v['k']} of {v['n']}" + (f" ({v['fewer']})" if v.get("fewer") else ""),
                         "verdict": f"{v['status']} ({v['why']})"})
        self.log(summary=True, **{f"answer: {v['question']}": f"{v['text']}" for v in verdicts.values()})
        one = bool(verdicts) and min(v["n"] for v in verdicts.values()) < 2
        display(Markdown("A verdict is **shown** when the effect lies on the same side of no effect in every "
                         "replicate (each trained with its own seed on the same split) and its interval excludes "
                         "no effect; otherwise it is **not settled**. An interval covers training seeds and test "
                         "sampling together (the t interval over the seeds combined with a bootstrap over test "
                         "lesions) unless its row says otherwise; it is 95 % unless a lower level is shown, where a "
                         "family of questions is Bonferroni-corrected (1 - 0.05/m)."
                         + (" **One replicate**: no verdict here can be a finding (set `replicates` to 3 or more)."
                            if one else "") if verdicts else "This chapter states no verdict."))
        if verdicts:
            from ..plots import verdicts_forest
            display(verdicts_forest(verdicts, title="Every verdict of this chapter: each replicate (open circles) "
                                                    "and the mean with its interval (diamond; filled when shown)"))
        return pd.DataFrame(rows, columns=["question", "effect [interval]", "each replicate", "holds in",
                                           "verdict"]).set_index("question")

    def section(self, chapter: str) -> dict:
        """Another chapter's flat parameters from the same profile (e.g. the compression chapter's qualities)."""
        return chapter_params(self.profile, chapter)

    def view(self, size: int | None = None, grouped: bool | None = None) -> PreparedView:
        """The :class:`~hamviz.view.PreparedView` of this chapter's data at ``size`` (default: image_size) with
        the profile's split (``grouped=False``: the image-level split, for the leak audit only); built once. A
        split part without some class is a warning, printed in the chapter and recorded (``split_warnings``)."""
        P = self.params
        size = int(size or P["image_size"])
        grouped = P["split"]["grouped"] if grouped is None else grouped
        if (size, grouped) not in self._views:
            view = prepare(self.data, size, resize=P["resize"], on_corrupt=P["on_corrupt"],
                           fractions=P["split"]["fractions"], seed=P["seed"], grouped=grouped)
            warnings = view.split_warnings()
            if warnings and not any(v.split_id == view.split_id for v in self._views.values()):
                for w in warnings:  # once per split (every size shares it)
                    print(f"Warning: {w}")
                self.log(split_warnings=warnings)
            self._views[(size, grouped)] = view
        return self._views[(size, grouped)]


def _overrides(params) -> dict:
    """The notebook's ``params``: a mapping, or the YAML/JSON text ``papermill -p params '{"seed": 3}'`` delivers
    (papermill's ``-p`` passes strings; ``-y 'params: {seed: 3}'`` passes a mapping)."""
    if params is None or params == "":
        return {}
    if isinstance(params, str):
        params = parse_yaml(params, "the notebook's params")
    if not isinstance(params, dict):
        raise ParamsError(f"params must be a mapping of profile keys to values, not {type(params).__name__} "
                          f"{params!r}; with papermill: -y 'params: {{seed: 3, chapters: {{classifier: "
                          f"{{epochs: 2}}}}}}' (or -p params '{{\"seed\": 3}}')")
    return dict(params)


def start(chapter: str, profile: str = "cpu", params: dict | None = None, data_dir=None,
          record_path=None, load_data: bool = True) -> Chapter:
    """Set up a chapter notebook. ``params`` overrides profile keys (same nesting as the YAML);
    ``data_dir`` overrides the profile's (which defaults to $HAMVIZ_DATA, then the default data folder once a
    download completed there). Raises ParamsError for bad parameters and for pretrained weights this chapter asks
    for that are not on this machine (other chapters' weights are theirs to check: the EDA chapter runs without
    any), DataError for bad data."""
    from ..data import load_ham10000
    overrides = _overrides(params)
    if data_dir:
        overrides["data_dir"] = str(data_dir)
    # one rule finds the profile (hamviz.params.find_profile): a relative path where papermill's --cwd moved this
    # kernel, or a name that a user's file and a shipped one both answer, is refused; the file used is said here and
    # recorded (provenance.profile_file)
    full = load_profile(profile, overrides, check_weights=False)
    print(f"Profile {full['profile']}: {full['_source']}")
    problems = weights_problems(full, [chapter])
    if problems:
        raise ParamsError(f"Invalid parameters in {full['_source']}:\n  - " + "\n  - ".join(problems))
    flat = chapter_params(full, chapter)
    set_seeds(flat["seed"])
    offline_plotly()
    if record_path is None:
        rec_dir = Path(os.environ.get(RECORD_ENV, "records"))
        record_path = rec_dir / f"{chapter}.json"
    ch = Chapter(chapter, flat, Path(record_path), profile=full)
    if load_data:
        ch.data = load_ham10000(flat["data_dir"], masks=flat["masks"], on_missing=flat["on_missing"],
                                on_corrupt=flat["on_corrupt"], on_mask_mismatch=flat["on_mask_mismatch"])
        if ch.data.report.get("mask_mismatch"):
            print(f"Note: {len(ch.data.report['mask_mismatch'])} lesion mask(s) of another geometry than their image "
                  f"treated as missing (on_mask_mismatch: skip)")
        damaged = ch.data.report.get("damaged_files")
        if damaged:
            print(f"Note: {len(damaged)} damaged image file(s) left out (on_corrupt: skip): "
                  + ", ".join(list(damaged)[:5]) + (", ..." if len(damaged) > 5 else ""))
    ch.record = {"chapter": chapter, "profile": flat["profile"], "complete": False,
                 "provenance": {**provenance(flat, ch.data.fingerprint if ch.data is not None else None),
                                "profile_file": full["_source"]},
                 "summary": {}, "values": {}}
    ch.save()
    return ch
