"""Name templates: one grammar per model family, compiled both ways (format a name, parse a name).

A template is text with placeholders and optional groups, written in ``[family.names]`` of a
``models/*.toml`` table::

    mobilenet_v1_{alpha:.2f}_{resolution}          ->  mobilenet_v1_0.50_224
    efficientnet_{variant}[_r{resolution}]          ->  efficientnet_b3, efficientnet_b3_r320
    [_dm{depth_multiplier}][_ch{input_channels}][_{notop}|_c{classes}]   ->  _dm2_ch1_notop, _c10

- ``{field}`` or ``{field:spec}``: a value of the configuration; ``spec`` is a Python format spec
  (``.2f``). Fields: see :data:`FIELDS`. ``{notop}`` is a flag: the text ``notop`` when the model has no
  classifier.
- ``[a|b]``: an optional group. Formatting writes the first alternative with a field whose value differs
  from its default, or nothing; parsing an absent group gives the defaults.

Importing this module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

# field -> kind. alpha and width are the same value (the width multiplier); the MobileNet papers say alpha.
FIELDS: dict[str, str] = {
    "alpha": "float", "width": "float", "depth": "float", "resolution": "int", "variant": "variant",
    "depth_multiplier": "int", "input_channels": "int", "classes": "int", "notop": "flag",
}
_PATTERNS = {"float": r"\d+(?:\.\d+)?", "int": r"\d+", "flag": "notop"}
_SAMPLES = {"float": (0.25, 1.0, 12.5, 0.1), "int": (1, 32, 224, 1000)}


class TemplateError(ValueError):
    """A malformed template (the message says what and where)."""


@dataclass(frozen=True)
class Field:
    name: str
    spec: str = ""

    @property
    def kind(self) -> str:
        return FIELDS[self.name]


Part = Union[str, Field, "Group"]


@dataclass(frozen=True)
class Group:
    alternatives: tuple[tuple[str | Field, ...], ...]


@dataclass(frozen=True)
class NameTemplate:
    """A compiled name template: :meth:`format` and :meth:`parse` are inverses on canonical names."""

    text: str
    parts: tuple[Part, ...]

    @classmethod
    def compile(cls, text: str) -> "NameTemplate":
        if not isinstance(text, str) or not text:
            raise TemplateError(f"expected a non-empty string, got {text!r}")
        parts, i = _parse(text, 0, top=True)
        tmpl = cls(text, tuple(parts))
        seen = [f.name for f in tmpl.fields()]
        dup = {f for f in seen if seen.count(f) > 1}
        if dup:
            raise TemplateError(f"{text!r}: field(s) {sorted(dup)} appear more than once")
        if {"alpha", "width"} <= set(seen):
            raise TemplateError(f"{text!r}: alpha and width are the same value; use one")
        return tmpl

    def __add__(self, other: "NameTemplate") -> "NameTemplate":
        return NameTemplate.compile(self.text + other.text)

    def fields(self, optional: bool | None = None) -> list[Field]:
        """The fields of the template; ``optional``: only those in (True) or out of (False) optional groups."""
        out = []
        for p in self.parts:
            if isinstance(p, Field) and optional is not True:
                out.append(p)
            elif isinstance(p, Group) and optional is not False:
                out += [x for alt in p.alternatives for x in alt if isinstance(x, Field)]
        return out

    def format(self, values: dict[str, Any], defaults: dict[str, Any]) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, Group):
                for alt in p.alternatives:
                    if any(values[x.name] != defaults.get(x.name) for x in alt if isinstance(x, Field)):
                        out += [x if isinstance(x, str) else _fmt(x, values[x.name]) for x in alt]
                        break
            else:
                out.append(_fmt(p, values[p.name]) if isinstance(p, Field) else p)
        return "".join(out)

    def regex(self, variants: tuple[str, ...] = ()) -> re.Pattern[str]:
        """The anchored regular expression of the names this template writes (``variants``: the names
        ``{variant}`` may take)."""

        def pat(x: str | Field) -> str:
            if isinstance(x, str):
                return re.escape(x)
            body = "|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)) if x.kind == "variant" \
                else _PATTERNS[x.kind]
            return f"(?P<{x.name}>{body})"

        rx = []
        for p in self.parts:
            if isinstance(p, Group):
                rx.append("(?:" + "|".join("".join(pat(x) for x in alt) for alt in p.alternatives) + ")?")
            else:
                rx.append(pat(p))
        return re.compile("^" + "".join(rx) + "$")

    def parse(self, name: str, variants: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The field values written in ``name`` (absent optional fields left out), or None."""
        m = self.regex(variants).match(name)
        if m is None:
            return None
        out: dict[str, Any] = {}
        for key, raw in m.groupdict().items():
            if raw is None:
                continue
            kind = FIELDS[key]
            out[key] = float(raw) if kind == "float" else int(raw) if kind == "int" else True if kind == "flag" else raw
        return out


def _fmt(x: Field, value: Any) -> str:
    if x.kind == "flag":
        return "notop" if value else ""
    return format(value, x.spec)


def _parse(text: str, i: int, top: bool) -> tuple[list, int]:
    """Parse ``text`` from ``i`` up to the end (top) or to the closing ``]``/``|`` of a group."""
    parts: list = []
    lit = ""
    while i < len(text):
        c = text[i]
        if c == "{":
            j = text.find("}", i)
            if j < 0:
                raise TemplateError(f"{text!r}: unclosed '{{' at {i}")
            name, _, spec = text[i + 1:j].partition(":")
            if name not in FIELDS:
                raise TemplateError(f"{text!r}: unknown field {name!r}; known: {', '.join(FIELDS)}")
            f = Field(name, spec)
            _check_spec(text, f)
            if lit:
                parts.append(lit)
                lit = ""
            parts.append(f)
            i = j + 1
        elif c == "[":
            if not top:
                raise TemplateError(f"{text!r}: optional groups do not nest (at {i})")
            if lit:
                parts.append(lit)
                lit = ""
            alts = []
            i += 1
            while True:
                alt, i = _parse(text, i, top=False)
                if not any(isinstance(x, Field) for x in alt):
                    raise TemplateError(f"{text!r}: every alternative of an optional group needs a field")
                alts.append(tuple(alt))
                if i >= len(text):
                    raise TemplateError(f"{text!r}: unclosed '['")
                if text[i] == "]":
                    i += 1
                    break
                i += 1  # "|"
            parts.append(Group(tuple(alts)))
        elif c in "]|":
            if top:
                raise TemplateError(f"{text!r}: {c!r} outside an optional group (at {i})")
            break
        elif c == "}":
            raise TemplateError(f"{text!r}: unmatched '}}' at {i}")
        else:
            lit += c
            i += 1
    if lit:
        parts.append(lit)
    return parts, i


def _check_spec(text: str, f: Field) -> None:
    """The spec must format every sample value of its kind into text the parser reads back."""
    if f.kind in ("variant", "flag"):
        if f.spec:
            raise TemplateError(f"{text!r}: {{{f.name}}} takes no format spec")
        return
    for v in _SAMPLES[f.kind]:
        try:
            s = format(v, f.spec)
        except (ValueError, TypeError):
            raise TemplateError(f"{text!r}: format spec {f.spec!r} does not apply to {f.name} ({f.kind})") from None
        if not re.fullmatch(_PATTERNS[f.kind], s):
            raise TemplateError(f"{text!r}: {{{f.name}:{f.spec}}} writes {s!r}, which is not read back as a number")
