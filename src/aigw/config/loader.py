"""Load a configuration document from YAML, naming the field and line of every error."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aigw.config.schema import Config

Path_ = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LEADING_PATH = re.compile(r"^(?:Value error, )?([a-z_]+(?:\[\d+\]|\.[a-z_]+)*): ")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration document."""

    path: str
    message: str
    line: int | None = None

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        field = f"{self.path}: " if self.path else ""
        return f"{where}: {field}{self.message}"


class ConfigError(Exception):
    """A configuration document that cannot be used; ``issues`` says every reason."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__("\n".join(issue.format(source) for issue in issues))


def load_config_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate ``${ENV}`` references in, and validate a YAML configuration file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", "file is not valid UTF-8")]) from exc
    return load_config_text(text, source=source, env=env)


def load_config_text(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate a YAML configuration document given as text."""
    data, lines = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the document must be a mapping", 1)])
    issues: list[ConfigIssue] = []
    data = _interpolate(data, (), os.environ if env is None else env, lines, issues)
    if issues:
        raise ConfigError(source, issues)
    return validate_config(data, source=source, lines=lines)


def validate_config(
    data: Any, source: str = "<config>", lines: Mapping[Path_, int] | None = None
) -> Config:
    """Validate an already-parsed document (as the config center receives it)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _issues_from(exc, lines or {})) from exc


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {exc.problem}", line)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    _record_lines(node, (), lines)
    return data, lines


def _record_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            _record_lines(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines)


def _interpolate(
    value: Any,
    path: Path_,
    env: Mapping[str, str],
    lines: Mapping[Path_, int],
    issues: list[ConfigIssue],
) -> Any:
    if isinstance(value, str) and "${" in value:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            issues.append(
                ConfigIssue(
                    _dotted(path),
                    f"environment variable {name} is not set (write ${{{name}:-}} for an "
                    "empty default)",
                    _line_for(path, lines),
                )
            )
            return ""

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), env, lines, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), env, lines, issues) for i, v in enumerate(value)]
    return value


def _issues_from(exc: ValidationError, lines: Mapping[Path_, int]) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        path: Path_ = tuple(error["loc"])
        message = error["msg"]
        # Cross-reference checks run on the whole document and name their field in the message.
        if not path:
            match = _LEADING_PATH.match(message)
            if match:
                path = _parse_dotted(match.group(1))
                message = message[match.end() :]
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        else:
            message = message.removeprefix("Value error, ")
        issues.append(ConfigIssue(_dotted(path), message, _line_for(path, lines)))
    return issues


def _line_for(path: Path_, lines: Mapping[Path_, int]) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse_dotted(text: str) -> Path_:
    parts: list[str | int] = []
    for name, index in re.findall(r"([a-z_]+)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)
