"""Dataclass fields that carry their own JSON schema: one definition of a parameter's default, type, bounds,
allowed values and description.

A config dataclass of the library (e.g. :class:`hamviz.training.TrainConfig`) declares each field with
:func:`param`; :func:`schema_entries` turns chosen fields into the JSON-schema properties a profile section is
validated with (:mod:`hamviz.params` builds its schema from them instead of writing them again), and
:func:`check` validates an instance against the same schema, so a config built in code gets the checks a profile
gets.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from jsonschema import Draft202012Validator, exceptions, validators

#: JSON Schema's validator, except that an "integer" is a Python int (not 3.0, not True): what Keras and NumPy need.
_Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)))

_TYPE_WORDS = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
               "object": "a mapping", "array": "a list", "null": "null"}


def param(default: Any, description: str | None = None, **schema) -> Any:
    """A dataclass field with ``default`` (a dict or list default is copied for each instance) whose value must
    satisfy the JSON-schema keywords ``schema`` (``type``, ``enum``, ``minimum``, ``exclusiveMinimum``, ``maximum``,
    ``properties``, ...); ``description``: one line for the parameter reference and the profile schema."""
    meta = {"schema": schema, "description": description}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if "schema" in f.metadata}


def default_of(f: dataclasses.Field) -> Any:
    """A field's default (a fresh copy where it is built by a factory)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def schema_entries(cls, names=None) -> dict[str, dict]:
    """The JSON-schema properties of ``cls``'s :func:`param` fields (all, or those in ``names``, in that order):
    name -> {schema keywords, "default", "description" where given}. Raises KeyError naming a field that is not a
    :func:`param` field of ``cls``."""
    fields = _fields(cls)
    out = {}
    for name in names or fields:
        if name not in fields:
            raise KeyError(f"{cls.__name__} has no parameter field {name!r}")
        f = fields[name]
        entry = {**copy.deepcopy(f.metadata["schema"]), "default": default_of(f)}
        if f.metadata["description"]:
            entry["description"] = f.metadata["description"]
        out[name] = entry
    return out


def expected(schema: dict) -> str:
    """What a value must be, in words, from its JSON schema: "an integer >= 1", "one of adam, sgd", ..."""
    if "enum" in schema:
        return "one of " + ", ".join("null" if v is None else str(v) for v in schema["enum"])
    types = schema.get("type", [])
    words = " or ".join(_TYPE_WORDS.get(t, t) for t in ([types] if isinstance(types, str) else types))
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                      ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in schema]
    return (words or "a value") + (" " + " and ".join(bounds) if bounds else "")


def check(obj, error=ValueError, fix: str = "fix it in the profile") -> None:
    """Validate each :func:`param` field of dataclass instance ``obj`` against its schema. Raises ``error``
    naming the class, the field, what it must be, the value given and ``fix``, e.g. "TrainConfig.learning_rate
    must be a number > 0, not 'fast' (str); fix it in the profile"."""
    for name, f in _fields(type(obj)).items():
        value = getattr(obj, name)
        schema = f.metadata["schema"]
        problem = exceptions.best_match(_Validator(schema).iter_errors(value))
        if problem is not None:  # inside a mapping or list: which entry, and why
            where = f" ({'.'.join(map(str, problem.path))}: {problem.message})" if problem.path else ""
            raise error(f"{type(obj).__name__}.{name} must be {expected(schema)}, not {value!r} "
                        f"({type(value).__name__}){where}; {fix}")
