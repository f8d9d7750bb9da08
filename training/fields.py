"""A setting declared once: its flag, help, check and resume rule sit with its field.

`flag(default, help, ...)` returns a `dataclasses.field` whose metadata holds
everything the rest of the project derives from a setting; `nested(factory,
...)` declares a field that is itself a configuration (`TrainConfig.model`, a
`keras_googlenet.GoogLeNetConfig`), with a `setting(help, ...)` for each of its
fields that a flag sets (that configuration checks its own values):

- the command line: `add_arguments` adds one argument per setting to an
  argparse parser, in groups, the default read from the field (`auto=True`: the
  flag's default is "auto", `None` in the configuration); `from_flags` builds
  the configuration from the parsed values;
- validation: `first_error` runs each field's `Check`s (a field with `choices`
  and no checks of its own is checked against them) and returns the first
  one-line message, `"--flag must be <requirement>; got <value>"`;
- JSON: `to_json` and `from_json` write a nested configuration as an object of
  its settings, and read it from one, or from the flat keys of files written
  before it was nested;
- resuming: `resume_independent` lists the fields declared
  `resume=MAY_CHANGE` (they do not change the trained state), and
  `legacy_values` the values that runs saved before a field existed were
  trained with (`legacy=`).

Adding a setting is one `flag(...)` field, or one `setting(...)` of a nested
configuration (and a test); see `training.config.TrainConfig`.
"""

import argparse
import dataclasses
import functools
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
        return must_be(label, requirement, self.shown(value))


def must_be(label, requirement, shown):
    """The one-line message of a bad setting: `LABEL must be REQUIREMENT; got SHOWN`
    (`shown`: the value as the message writes it, e.g. its repr)."""
    return f"{label} must be {requirement}; got {shown}"


def rule(predicate, requirement, shown=repr):
    """A `Check` of the value alone: `predicate(value)` is True for a good one."""
    return Check(lambda value, config: predicate(value), requirement, shown)


def setting(help=None, *, choices=None, metavar=None, action=None, cli=True):
    """A field of a nested configuration that a flag sets (see `nested`).

    Its default and type are the nested configuration's; that configuration
    checks it. The arguments are those of `flag`.
    """
    return dict(help=help, checks=(), choices=choices, auto=False, metavar=metavar,
                action=action, cli=cli, resume=MUST_MATCH, legacy=_NONE)


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


def nested(factory, *, group, settings):
    """A field holding a configuration (a dataclass) that flags fill in.

    Args:
        factory: Makes the default configuration (it gives the flags' defaults).
        group: The `--help` section of its flags.
        settings: `{field name: setting(...)}` of the fields flags set, in
            `--help` order; the configuration's other fields keep the default's
            values, and config.json holds only these.
    """
    return dataclasses.field(default_factory=factory, metadata=dict(
        group=group, nested=settings, resume=MUST_MATCH, legacy=_NONE))


@dataclass(frozen=True)
class Setting:
    """One setting of a configuration class: `path` is `("lr",)` for a field of
    its own, `("model", "width")` for a field of a nested configuration."""

    name: str
    path: tuple
    metadata: dict
    type: Any
    default: Any

    def get(self, config):
        for name in self.path:
            config = getattr(config, name)
        return config


@functools.lru_cache(maxsize=None)
def settings(cls):
    """Every setting of dataclass `cls`: its `flag` fields, and the `setting`s of its
    `nested` fields, in declaration order (a tuple)."""
    out = []
    for field in declared(cls):
        meta = field.metadata
        if "nested" not in meta:
            out.append(Setting(field.name, (field.name,), meta, field.type, field.default))
            continue
        default = field.default_factory()
        types = {f.name: f.type for f in dataclasses.fields(default)}
        out += [Setting(name, (field.name, name), {**sub, "group": meta["group"]}, types[name],
                        getattr(default, name)) for name, sub in meta["nested"].items()]
    return tuple(out)


def declared(cls):
    """The fields of dataclass `cls` declared with `flag` or `nested`."""
    return [f for f in dataclasses.fields(cls) if "group" in f.metadata]


def label(setting):
    """How messages name a setting: its flag (`--batch-size`), or its name if it has none."""
    return f"--{setting.name.replace('_', '-')}" if setting.metadata["cli"] else setting.name


def label_of(cls, name):
    """`label` of the setting of `cls` called `name` (its name if there is none)."""
    return next((label(s) for s in settings(cls) if s.name == name), name)


def first_error(config):
    """The message of the first failing check of `config`'s settings, or None."""
    for setting in settings(type(config)):
        value = setting.get(config)
        for check in setting.metadata["checks"]:
            message = check.error(label(setting), value, config)
            if message is not None:
                return message
    return None


def resume_independent(cls):
    """Names of the fields declared `resume=MAY_CHANGE`."""
    return tuple(f.name for f in declared(cls) if f.metadata["resume"] == MAY_CHANGE)


def legacy_values(cls):
    """`{name: value}` of the fields declared with the value of older runs (`legacy=`)."""
    return {f.name: f.metadata["legacy"] for f in declared(cls) if f.metadata["legacy"] is not _NONE}


def from_flags(cls, values):
    """A `cls` from parsed flags (`{setting name: value}`; "auto" of `auto=True`
    settings is `None`). Settings left out keep their defaults."""
    values = {s.name: None if s.metadata["auto"] and values.get(s.name) == "auto"
              else values[s.name] for s in settings(cls) if s.name in values}
    return cls(**_assemble(cls, values))


def to_json(config):
    """`dataclasses.asdict(config)`, with each nested configuration as an object of
    its settings (their JSON values: lists for tuples)."""
    values = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if "nested" in field.metadata:
            value = {name: getattr(value, name) for name in field.metadata["nested"]}
        values[field.name] = _json_value(value)
    return values


def from_json(cls, values):
    """A `cls` from `to_json`'s output, or from an older file: missing fields take their
    `legacy=` values, and a nested configuration's settings may be top-level keys (the
    layout before it was nested).

    Raises:
        ConfigError: For a key that is no field (or setting) of `cls`.
    """
    values = {**legacy_values(cls), **values}
    for field in dataclasses.fields(cls):
        if "nested" in field.metadata:
            inner = values.pop(field.name, {})
            if not isinstance(inner, dict):
                raise ConfigError(f"{field.name!r} must be an object; got {inner!r}")
            unknown = sorted(set(inner) - set(field.metadata["nested"]))
            if unknown:
                raise ConfigError(f"unknown {field.name} keys: {', '.join(unknown)}")
            values.update(inner)
    known = {s.name for s in settings(cls)} | {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
    return cls(**_assemble(cls, values))


def differences(config, other):
    """Names of the settings (fields of nested configurations by their own names) whose
    values differ between two configurations of one class."""
    out = []
    for field in dataclasses.fields(config):
        mine, theirs = getattr(config, field.name), getattr(other, field.name)
        if "nested" in field.metadata:
            out += [f.name for f in dataclasses.fields(mine)
                    if getattr(mine, f.name) != getattr(theirs, f.name)]
        elif mine != theirs:
            out.append(field.name)
    return out


def _assemble(cls, values):
    """`cls`'s keyword arguments from `{name: value}`: a nested configuration's settings
    replace those of its default."""
    values = dict(values)
    for field in declared(cls):
        if "nested" in field.metadata and field.name not in values:
            inner = {k: values.pop(k) for k in field.metadata["nested"] if k in values}
            values[field.name] = dataclasses.replace(field.default_factory(), **inner)
    return values


def _json_value(value):
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def add_arguments(parser, cls, descriptions=None):
    """Adds one argument per command-line setting of `cls`, in argparse groups.

    Groups come in the order of their first field; `descriptions` maps a group
    to the text `--help` shows under its title.
    """
    groups = {}
    for setting in settings(cls):
        meta = setting.metadata
        name = meta["group"]
        if name not in groups:
            groups[name] = parser.add_argument_group(name, (descriptions or {}).get(name))
        if callable(meta["cli"]):
            meta["cli"](groups[name])
        elif meta["cli"]:
            groups[name].add_argument(label(setting), **_argument(setting))


def _argument(setting):
    """The `add_argument` keywords of a setting."""
    meta = setting.metadata
    kwargs = dict(default=setting.default, help=meta["help"])
    kind = _value_type(setting.type)
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
