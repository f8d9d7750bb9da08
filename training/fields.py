"""A setting declared once: its flag, help, check and resume rule sit with its field.

`flag(default, help, ...)` returns a `dataclasses.field` whose metadata holds
everything the rest of the project derives from a setting:

- the command line: `add_arguments` adds one argument per field to an argparse
  parser, in groups, the default read from the field (`auto=True`: the flag's
  default is "auto", `None` in the configuration: `unset_auto`);
- validation: `first_error` runs each field's `Check`s (a field with `choices`
  and no checks of its own is checked against them) and returns the first
  one-line message, `"--flag must be <requirement>; got <value>"`;
- resuming: `resume_independent` lists the fields declared
  `resume=MAY_CHANGE` (they do not change the trained state), and
  `legacy_values` the values that runs saved before a field existed were
  trained with (`legacy=`).

Adding a setting is one `flag(...)` field (and a test); see
`training.config.TrainConfig`.
"""

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

#: `flag(resume=...)`: must a resumed run have the same value (the default), or may
#: the value change between a killed run and its resumption?
MUST_MATCH, MAY_CHANGE = "must-match", "may-change"

_NONE = object()  # no legacy value: every saved run has the field


class ConfigError(ValueError):
    """An invalid setting; the message is one line meant for the user."""


@dataclass(frozen=True)
class Check:
    """One rule of a field: `valid(value, config)` is True for a good value.

    `requirement` says what a valid value is (a string, or a function of the
    config when it depends on other fields); `shown` formats the bad value.
    """

    valid: Callable[[Any, Any], bool]
    requirement: Any
    shown: Callable[[Any], str] = repr

    def error(self, label, value, config):
        """The one-line message for a bad `value`, or None if it is valid."""
        if self.valid(value, config):
            return None
        requirement = self.requirement
        if callable(requirement):
            requirement = requirement(config)
        return f"{label} must be {requirement}; got {self.shown(value)}"


def rule(predicate, requirement, shown=repr):
    """A `Check` of the value alone: `predicate(value)` is True for a good one."""
    return Check(lambda value, config: predicate(value), requirement, shown)


def flag(default, help=None, *, group, checks=(), choices=None, auto=False, metavar=None,
         action=None, cli=True, resume=MUST_MATCH, legacy=_NONE):
    """A configuration field with its command-line flag, checks and resume rule.

    Args:
        default: The field's default (`None` for a value picked later).
        help: The flag's `--help` text.
        group: The `--help` section of the flag.
        checks: `Check`s of the value, run by `first_error` in order.
        choices: The valid values; the flag offers them (with "auto" when
            `auto`), and they are checked unless `checks` are given.
        auto: The flag's default is "auto", meaning `None` in the configuration.
        metavar: The flag's metavar.
        action: An argparse action (default: from the field's type; booleans
            get `--x/--no-x`).
        cli: False for a field no flag sets; or a function `add(group)` adding
            a flag shared with other commands.
        resume: `MUST_MATCH` or `MAY_CHANGE` (see `resume_independent`).
        legacy: The value of runs saved before the field existed.
    """
    if resume not in (MUST_MATCH, MAY_CHANGE):
        raise ValueError(f"resume must be {MUST_MATCH!r} or {MAY_CHANGE!r}; got {resume!r}")
    if choices is not None and not checks:
        allowed = tuple(choices) if default is not None else (None, *choices)
        checks = (rule(lambda value: value in allowed, f"one of {tuple(choices)}"),)
    metadata = dict(help=help, group=group, checks=tuple(checks), choices=choices, auto=auto,
                    metavar=metavar, action=action, cli=cli, resume=resume, legacy=legacy)
    return dataclasses.field(default=default, metadata=metadata)


def declared(cls):
    """The fields of dataclass `cls` declared with `flag`."""
    return [f for f in dataclasses.fields(cls) if "group" in f.metadata]


def label(field):
    """How messages name a field: its flag (`--batch-size`), or its name if it has none."""
    return f"--{field.name.replace('_', '-')}" if field.metadata.get("cli", True) else field.name


def first_error(config):
    """The message of the first failing check of `config`'s fields, or None."""
    for field in declared(type(config)):
        value = getattr(config, field.name)
        for check in field.metadata["checks"]:
            message = check.error(label(field), value, config)
            if message is not None:
                return message
    return None


def resume_independent(cls):
    """Names of the fields declared `resume=MAY_CHANGE`."""
    return tuple(f.name for f in declared(cls) if f.metadata["resume"] == MAY_CHANGE)


def legacy_values(cls):
    """`{name: value}` of the fields declared with the value of older runs (`legacy=`)."""
    return {f.name: f.metadata["legacy"] for f in declared(cls) if f.metadata["legacy"] is not _NONE}


def unset_auto(cls, values):
    """`values` (parsed flags, by field) with the "auto" of `auto=True` fields as `None`."""
    auto = {f.name for f in declared(cls) if f.metadata["auto"]}
    return {k: None if k in auto and v == "auto" else v for k, v in values.items()}


def add_arguments(parser, cls, descriptions=None):
    """Adds one argument per command-line field of `cls`, in argparse groups.

    Groups come in the order of their first field; `descriptions` maps a group
    to the text `--help` shows under its title.
    """
    groups = {}
    for field in declared(cls):
        meta = field.metadata
        name = meta["group"]
        if name not in groups:
            groups[name] = parser.add_argument_group(name, (descriptions or {}).get(name))
        if callable(meta["cli"]):
            meta["cli"](groups[name])
        elif meta["cli"]:
            groups[name].add_argument(label(field), **_argument(field))


def _argument(field):
    """The `add_argument` keywords of a field."""
    meta = field.metadata
    kwargs = dict(default=field.default, help=meta["help"])
    kind = _value_type(field.type)
    if meta["action"] is not None:
        kwargs["action"] = meta["action"]
    elif kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif kind is not str:
        kwargs["type"] = kind
    if meta["choices"] is not None:
        kwargs["choices"] = ("auto", *meta["choices"]) if meta["auto"] else meta["choices"]
    if meta["auto"]:
        kwargs["default"] = "auto"
    if meta["metavar"] is not None:
        kwargs["metavar"] = meta["metavar"]
    return kwargs


def _value_type(annotation):
    """`int` for `int` or `Optional[int]` (the type a flag's text converts to)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation
