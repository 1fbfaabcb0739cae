"""HTTP route templates as the Functions host (ASP.NET Core routing) reads them.

Supported: literal segments (case-insensitive), `{name}`, `{name?}`, `{name=default}`,
`{name:constraint(args)...}`, catch-all `{*rest}` / `{**rest}` as the last segment, and complex
segments such as `{file}.{ext}`. When several templates match, the most specific wins, using
ASP.NET's inbound precedence: literal < complex segment < constrained parameter < parameter <
catch-all, compared segment by segment.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class RouteTemplateError(ValueError):
    pass


def _integer_in(bounds: tuple[int, int]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        if not re.fullmatch(r"[+-]?\d+", value):
            return False
        return bounds[0] <= int(value) <= bounds[1]

    return check


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": _integer_in(_INT32),
    "long": _integer_in(_INT64),
    "bool": lambda value: value.lower() in {"true", "false"},
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "guid": _is_guid,
    "decimal": _is_float,
    "double": _is_float,
    "float": _is_float,
    "datetime": _is_datetime,
    "required": lambda value: value != "",
}


def _constraint(spec: str, template: str) -> Callable[[str], bool]:
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec, re.DOTALL)
    if not match:
        raise RouteTemplateError(f"route {template!r}: cannot read constraint {spec!r}")
    name, raw_args = match[1].lower(), match[2]
    if raw_args is None:
        if name in _SIMPLE_CONSTRAINTS:
            return _SIMPLE_CONSTRAINTS[name]
        raise RouteTemplateError(f"route {template!r}: unknown route constraint {spec!r}")
    if name == "regex":
        # Braces are doubled inside route templates: `{id:regex(^\\d{{3}}$)}`.
        pattern = re.compile(raw_args.replace("{{", "{").replace("}}", "}"), re.IGNORECASE)
        return lambda value: pattern.search(value) is not None
    try:
        numbers = [int(part) for part in raw_args.split(",")]
    except ValueError as error:
        raise RouteTemplateError(f"route {template!r}: bad arguments in {spec!r}") from error
    if name == "minlength" and len(numbers) == 1:
        return lambda value: len(value) >= numbers[0]
    if name == "maxlength" and len(numbers) == 1:
        return lambda value: len(value) <= numbers[0]
    if name == "length" and len(numbers) == 1:
        return lambda value: len(value) == numbers[0]
    if name == "length" and len(numbers) == 2:
        return lambda value: numbers[0] <= len(value) <= numbers[1]
    is_long = _integer_in(_INT64)
    if name == "min" and len(numbers) == 1:
        return lambda value: is_long(value) and int(value) >= numbers[0]
    if name == "max" and len(numbers) == 1:
        return lambda value: is_long(value) and int(value) <= numbers[0]
    if name == "range" and len(numbers) == 2:
        return lambda value: is_long(value) and numbers[0] <= int(value) <= numbers[1]
    raise RouteTemplateError(f"route {template!r}: unknown route constraint {spec!r}")


@dataclass
class _Parameter:
    name: str
    optional: bool
    default: str | None
    catch_all: bool
    checks: list[Callable[[str], bool]]


@dataclass
class _Segment:
    parts: list[str | _Parameter]
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = ""
        for part in self.parts:
            if isinstance(part, str):
                regex += re.escape(part)
            else:
                regex += f"(?P<{_group(part.name)}>.+?)" if len(self.parts) > 1 else "(?P<v>.*)"
        self.pattern = re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL)

    @property
    def only_parameter(self) -> _Parameter | None:
        if len(self.parts) == 1 and isinstance(self.parts[0], _Parameter):
            return self.parts[0]
        return None

    @property
    def precedence(self) -> int:
        parameter = self.only_parameter
        if parameter is None:
            return 1 if all(isinstance(part, str) for part in self.parts) else 2
        if parameter.catch_all:
            return 5
        return 3 if parameter.checks else 4


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


def _parse_parameter(body: str, template: str) -> _Parameter:
    """`{*name}`, `{name}`, `{name?}`, `{name=default}`, `{name:int:min(1)?}`, `{name:alpha=x}`."""
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    name_match = re.match(r"^\w+", body)
    if not name_match:
        raise RouteTemplateError(f"route {template!r}: bad parameter {{{body}}}")
    name, rest = name_match[0], body[name_match.end() :]
    specs: list[str] = []
    optional, default = False, None
    depth, current, position = 0, None, 0
    while position < len(rest):
        char = rest[position]
        if depth == 0 and char == ":":
            if current is not None:
                specs.append(current)
            current = ""
        elif depth == 0 and char == "=":
            default = rest[position + 1 :]
            break
        elif depth == 0 and char == "?" and position == len(rest) - 1:
            optional = True
        elif current is None:
            raise RouteTemplateError(f"route {template!r}: unexpected {rest!r} in {{{body}}}")
        else:
            depth += {"(": 1, ")": -1}.get(char, 0)
            current += char
        position += 1
    if current is not None:
        specs.append(current)
    checks = [_constraint(spec, template) for spec in specs]
    return _Parameter(name, optional or default is not None, default, catch_all, checks)


def _parse_segment(text: str, template: str) -> _Segment:
    parts: list[str | _Parameter] = []
    position = 0
    while position < len(text):
        if text[position] == "{":
            depth, end = 0, position
            while end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            if depth != 0:
                raise RouteTemplateError(f"route {template!r}: unbalanced braces in {text!r}")
            parts.append(_parse_parameter(text[position + 1 : end], template))
            position = end + 1
        else:
            end = text.find("{", position)
            end = len(text) if end == -1 else end
            if "}" in text[position:end]:
                raise RouteTemplateError(f"route {template!r}: unbalanced braces in {text!r}")
            parts.append(text[position:end])
            position = end
    for index, part in enumerate(parts):
        if isinstance(part, _Parameter) and len(parts) > 1:
            if part.catch_all or (part.optional and index != len(parts) - 1):
                raise RouteTemplateError(
                    f"route {template!r}: {{{part.name}}} cannot be optional or catch-all "
                    "inside a segment with other text"
                )
            if index > 0 and isinstance(parts[index - 1], _Parameter):
                raise RouteTemplateError(f"route {template!r}: two parameters need literal text between them")
    return _Segment(parts)


@dataclass
class RouteTemplate:
    template: str
    segments: list[_Segment]

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.precedence for segment in self.segments)

    def match(self, path_segments: list[str]) -> dict[str, str] | None:
        """Route values if the (URL-decoded) path segments fit this template, else None."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            parameter = segment.only_parameter
            if parameter is not None and parameter.catch_all:
                rest = "/".join(path_segments[index:])
                if not rest and parameter.default is not None:
                    rest = parameter.default
                if rest and not all(check(rest) for check in parameter.checks):
                    return None
                if rest:
                    values[parameter.name] = rest
                return values
            if index >= len(path_segments):
                if parameter is not None and parameter.optional:
                    if parameter.default is not None:
                        values[parameter.name] = parameter.default
                    continue
                return None
            if not self._match_segment(segment, path_segments[index], values):
                return None
        if len(path_segments) > len(self.segments):
            return None
        return values

    @staticmethod
    def _match_segment(segment: _Segment, text: str, values: dict[str, str]) -> bool:
        found = segment.pattern.match(text)
        if found is None:
            return False
        parameter = segment.only_parameter
        if parameter is not None:
            if text == "":
                return False
            if not all(check(text) for check in parameter.checks):
                return False
            values[parameter.name] = text
            return True
        for part in segment.parts:
            if isinstance(part, _Parameter):
                value = found[_group(part.name)]
                if not all(check(value) for check in part.checks):
                    return False
                values[part.name] = value
        return True


def parse_template(template: str) -> RouteTemplate:
    text = template.strip().strip("/")
    raw_segments = text.split("/") if text else []
    segments = [_parse_segment(raw, template) for raw in raw_segments]
    seen: set[str] = set()
    for index, segment in enumerate(segments):
        if segment.parts == [] or segment.parts == [""]:
            raise RouteTemplateError(f"route {template!r}: empty segment")
        for part in segment.parts:
            if isinstance(part, _Parameter):
                if part.name.lower() in seen:
                    raise RouteTemplateError(f"route {template!r}: parameter {part.name} repeats")
                seen.add(part.name.lower())
                if part.catch_all and index != len(segments) - 1:
                    raise RouteTemplateError(
                        f"route {template!r}: catch-all {{*{part.name}}} must be the last segment"
                    )
    for segment in segments[:-1]:
        parameter = segment.only_parameter
        if parameter is not None and parameter.optional and not parameter.catch_all:
            raise RouteTemplateError(
                f"route {template!r}: only the last segment may be optional ({{{parameter.name}?}})"
            )
    return RouteTemplate(template, segments)


def split_path(path: str) -> list[str]:
    """URL path (without query) to decoded segments; an encoded slash stays inside its segment."""
    trimmed = path.strip("/")
    return [unquote(raw) for raw in trimmed.split("/")] if trimmed else []
