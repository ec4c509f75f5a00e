"""Settings as dataclasses: one place per setting for its type, default, help and check.

:func:`opt` declares a field; :func:`add_arguments` generates its command-line flag
(for ``train``, ``serve``, ...); :func:`validate_fields` checks every value's type and
range, for flags and config files alike, with one line naming the setting and what it
wants. Torch-free.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import field, fields

from .errors import SqueezeNetError


# ------------------------------------------------------------------ checks
# Each returns None when the value is acceptable, else what is wrong with it.

def _finite(v):
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else "a finite number"


def positive(v):
    return _finite(v) or (None if v > 0 else "> 0")


def non_negative(v):
    return _finite(v) or (None if v >= 0 else ">= 0")


def probability(v):
    return _finite(v) or (None if 0 <= v < 1 else "in [0, 1)")


def fraction_open(v):
    return _finite(v) or (None if 0 < v < 1 else "in (0, 1)")


def share(v):
    return _finite(v) or (None if 0 < v <= 1 else "in (0, 1]")


def integer(v):
    return None if isinstance(v, int) and not isinstance(v, bool) else "an integer"


def positive_int(v):
    return integer(v) or (None if v >= 1 else ">= 1")


def non_negative_int(v):
    return integer(v) or (None if v >= 0 else ">= 0")


def input_size(v):
    return integer(v) or (None if 8 <= v <= 2048 else "between 8 and 2048 px")


def size_or_share(v):
    """0 (off), a size in px (an integer), or a share of the full size (a number between 0 and 1)."""
    ok = v == 0 or (8 <= v <= 2048 if isinstance(v, int) else 0 < v < 1)
    return _finite(v) or (None if ok else "0 (off), a size between 8 and 2048 px, or a share of the full size "
                                          "between 0 and 1 (e.g. 0.75)")


def one_of(*choices):
    def check(v):
        return None if v in choices else f"one of {', '.join(map(str, choices))}"
    return check


def within(lo, hi):
    def check(v):
        return _finite(v) or (None if lo <= v <= hi else f"between {lo} and {hi}")
    return check


def opt(default, help: str, check=None, *, flag: str | None = None, short: str | None = None, cli: bool = True,
        choices=None, resume_must_match: bool = False, positional: bool = False, invert: bool = False):
    """A setting: default, help, check. ``cli=False`` keeps it out of the flags;
    ``positional`` makes it an argument rather than a flag; ``invert`` makes a boolean a
    store-false switch named ``flag`` (``--skip-integrity-check`` for ``verify``);
    ``resume_must_match`` marks a training setting that shapes the optimisation, so
    resuming a run with it changed (a silent splice of two runs) is refused."""
    meta = dict(help=help, check=check, flag=flag, short=short, cli=cli, choices=choices,
                resume_must_match=resume_must_match, positional=positional, invert=invert)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


_TYPE_WORDS = {bool: "true or false (a boolean)", int: "an integer", float: "a number", str: "a string",
               dict: "a table", tuple: "a list"}


def _type_problem(v, hint) -> str | None:
    """None when ``v`` has the field's type, else what the field wants."""
    kinds = _kinds(hint)
    optional = type(None) in typing.get_args(hint)
    if v is None:
        return None if optional else _TYPE_WORDS[kinds[0]]
    ok = {bool: lambda: isinstance(v, bool),
          int: lambda: isinstance(v, int) and not isinstance(v, bool),
          float: lambda: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda: isinstance(v, str), dict: lambda: isinstance(v, dict),
          tuple: lambda: isinstance(v, (tuple, list))}
    return None if any(ok[k]() for k in kinds) else " or ".join(_TYPE_WORDS[k] for k in kinds)


def _kinds(hint) -> list:
    """The types a field's annotation allows, None aside (``float | str`` -> [float, str])."""
    return [t for t in typing.get_args(hint) if t is not type(None)] or [hint]


def _kind_word(v) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a table",
            list: "a list", type(None): "nothing"}.get(type(v), f"a {type(v).__name__}")


def flag_of(f) -> str:
    return f.metadata.get("flag") or ("--" + f.name.replace("_", "-") if f.metadata.get("cli", True) else f.name)


def check_field_types(cls, settings: dict) -> None:
    """Refuse, in one line, the first value of ``settings`` with the wrong type for its
    field of ``cls`` (unknown names are left alone)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in settings:
            v = settings[f.name]
            want = _type_problem(v, hints[f.name])
            if want:
                raise SqueezeNetError(f"setting '{f.name}' ({flag_of(f)}) must be {want}, got {v!r} ({_kind_word(v)})")


def validate_fields(obj) -> None:
    """Every field's type, then its check; one line naming the first bad one."""
    check_field_types(type(obj), dataclasses.asdict(obj))
    for f in fields(obj):
        v, check = getattr(obj, f.name), f.metadata.get("check")
        if v is not None and check is not None:
            problem = check(v)
            if problem:
                raise SqueezeNetError(f"{flag_of(f)} must be {problem}, got {v!r}")


def add_arguments(parser: argparse.ArgumentParser, cls, defaults: bool = True) -> None:
    """One flag per field of ``cls`` (``defaults=False``: every flag defaults to None, so
    only what is given overrides a config file). Values are checked by the fields' checks
    (:func:`validate_fields`), not here, so a flag and a config file get the same words."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = default not in (None, (), "") and "default" not in meta["help"] and not meta.get("invert")
        helptext = (meta["help"] + (f" (default: {default})" if shown else "")).replace("%", "%%")
        kinds = _kinds(hints[f.name])
        kind = kinds[0]
        if meta.get("positional"):
            parser.add_argument(f.name, help=helptext)
            continue
        names = [flag_of(f)] + ([meta["short"]] if meta.get("short") else [])
        given = default if defaults else None
        if kind is bool and meta.get("invert"):
            parser.add_argument(*names, dest=f.name, action="store_false", help=helptext)
        elif kind is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=given,
                                help=helptext)
        elif kind is tuple:
            parser.add_argument(*names, dest=f.name, action="append", default=[] if defaults else None,
                                help=helptext)
        else:
            parser.add_argument(*names, dest=f.name, type=_typed(kinds, flag_of(f)), default=given, help=helptext,
                                choices=meta.get("choices"), metavar=None if meta.get("choices") else f.name.upper())


def _typed(kinds, flag):
    """A flag's converter: the first of the field's types that reads the text (a
    ``float | str`` field such as ``--random-erasing`` takes 0.3 as a number, ``auto``
    as a word; its check then says which words it knows)."""
    def convert(s):
        for kind in kinds:
            try:
                return kind(s)
            except ValueError:
                pass
        raise argparse.ArgumentTypeError(f"{flag} expects {'a number' if float in kinds else 'an integer'}, "
                                         f"got '{s}'")
    convert.__name__ = kinds[0].__name__
    return convert
