"""Read YAML (and our own JSON) files into validated models, with errors naming file,
line and field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase
from ruamel.yaml.error import YAMLError

from patchkeeper.config.models import NAME_PATTERN, Patchset, Recipe
from patchkeeper.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
NAME = re.compile(NAME_PATTERN)  # a recipe's name: its file name unless it says


def read_yaml(path: Path, text: str | None = None) -> Any:
    """Round-trip load, so error messages can point at line numbers; `text` is what
    `path` would hold (a change not written yet), read instead of the file."""
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        return YAML(typ="rt").load(text)
    except YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None


def _line_of(document: Any, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest node along `loc` that has position info."""
    node, line = document, None
    for key in loc:
        if not isinstance(node, CommentedBase):
            break
        try:
            if isinstance(key, int):
                line = node.lc.item(key)[0] + 1
            else:
                line = node.lc.key(key)[0] + 1
            node = node[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _problems(err: ValidationError, path: Path, document: Any = None) -> ConfigError:
    problems = []
    for issue in err.errors(include_input=False)[:20]:
        loc = tuple(issue["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        line = _line_of(document, loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: {field}: {issue['msg']}")
    return ConfigError("\n".join(problems))


def _validate(model: type[M], document: Any, path: Path, **extra: Any) -> M:
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate({**extra, **document})
    except ValidationError as err:
        raise _problems(err, path, document) from None


def read_json(model: type[M], path: Path) -> M:
    """A JSON file patchkeeper wrote (and a person may have handed around or edited),
    shape checked: a wrong shape is bad input naming the file and the field."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return model.model_validate_json(data)
    except ValidationError as err:
        raise _problems(err, path) from None


def _resolve(base: Path, candidate: Path) -> Path:
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def load_patchset(path: Path, text: str | None = None) -> Patchset:
    """The patchset in `path` (or `text`, as `path` would hold it), checked."""
    document = read_yaml(path, text)
    patchset = _validate(Patchset, document, path, name=path.stem)
    patches = tuple(
        p.model_copy(update={"diff": _resolve(path.parent, p.diff)}) if p.diff else p
        for p in patchset.patches
    )
    for patch in patches:
        if patch.diff and not patch.diff.is_file():
            raise ConfigError(f"{path}: patch {patch.key}: diff file {patch.diff} not found")
    return patchset.model_copy(update={"patches": patches, "path": path})


def load_recipe(path: Path) -> Recipe:
    document = read_yaml(path)
    if isinstance(document, dict) and "name" not in document and not NAME.match(path.stem):
        raise ConfigError(
            f"{path}: the file name {path.stem!r} is the recipe's name; rename the file "
            "to letters, digits, '.', '_' and '-' only"
        )
    recipe = _validate(Recipe, document, path, name=path.stem)
    service = recipe.service
    template = service.chat_template
    if isinstance(template, Path):
        template = _resolve(path.parent, template)
        if not template.is_file():
            raise ConfigError(f"{path}: service.chat_template: {template} not found")
        service = service.model_copy(update={"chat_template": template})
    return recipe.model_copy(
        update={
            "patchsets": tuple(_resolve(path.parent, p) for p in recipe.patchsets),
            "service": service,
            "path": path,
        }
    )


def load_patchsets(recipe: Recipe) -> tuple[Patchset, ...]:
    return tuple(load_patchset(p) for p in recipe.patchsets)
