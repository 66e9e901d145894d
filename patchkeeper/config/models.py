"""Typed, validated shapes of `patchsets/*.yaml` and `recipes/*.yaml`.

Unknown keys are errors: a misspelt `witnes:` must not silently drop a check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from patchkeeper.config.compose_spec import service_errors

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Names that become path components (the conflicts directory, the resolutions store, the
# overlay): no separators, and no leading dot (`.`, `..` and hidden names are not names).
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
# What `git check-ref-format --branch` refuses: control characters, space, ~^:?*[\, `..`,
# `@{`, `//`, a leading `-` or `/`, a trailing `/` or `.`, `@` alone, and a component
# that starts with `.` or ends with `.lock`.
_BAD_BRANCH = re.compile(
    r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/]|[/.]$|^@$|(^|/)\.|\.lock(/|$)"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Upstream(_Strict):
    """Where the patched project lives upstream."""

    github: str | None = Field(None, description="owner/name on GitHub")
    git: str | None = Field(None, description="any clone URL, file:// included")
    branch: str = "main"

    @field_validator("github")
    @classmethod
    def _github_is_owner_name(cls, value: str | None) -> str | None:
        if value is not None and not _REPO.match(value):
            raise ValueError(f"must be 'owner/name', got {value!r}")
        return value

    @field_validator("branch")
    @classmethod
    def _branch_is_a_ref_name(cls, value: str) -> str:
        if not value or _BAD_BRANCH.search(value):
            raise ValueError(f"{value!r} is not a valid branch name (git check-ref-format)")
        return value

    @model_validator(mode="after")
    def _needs_a_remote(self) -> Upstream:
        if not self.github and not self.git:
            raise ValueError("give 'github: owner/name' or 'git: <clone URL>' (or both)")
        return self

    @property
    def clone_url(self) -> str:
        return self.git or f"https://github.com/{self.github}.git"


class Patch(_Strict):
    """One entry of a patchset: an upstream PR or a local diff."""

    pr: StrictInt | None = Field(None, gt=0)  # strict: YAML `pr: true` is not PR #1
    diff: Path | None = None
    id: str | None = Field(None, pattern=NAME_PATTERN)
    why: str = Field(min_length=1)
    witness: str | None = None
    exclude: tuple[str, ...] = Field(
        (), description="glob patterns (repo-relative) deliberately not ported, e.g. test/**"
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Patch:
        if (self.pr is None) == (self.diff is None):
            raise ValueError("give exactly one of 'pr: N' or 'diff: path'")
        if self.key.startswith("."):  # a diff file `..diff` or `.x.diff`: its stem
            raise ValueError(
                f"the patch's id {self.key!r} (its diff file's name) starts with a dot, and "
                "ids become directory names: give it an 'id:'"
            )
        return self

    @property
    def key(self) -> str:
        """Stable identifier used in locks and reports."""
        if self.id:
            return self.id
        if self.pr is not None:
            return f"pr-{self.pr}"
        assert self.diff is not None
        return self.diff.stem


class RetiredPatch(BaseModel):
    """A patch `prune` took out because upstream made it unnecessary, and why."""

    model_config = ConfigDict(extra="allow", frozen=True)

    reason: str


class Patchset(_Strict):
    """A named, ordered list of patches against one upstream repository."""

    name: str = Field(pattern=NAME_PATTERN)
    upstream: Upstream
    source_root: PurePosixPath
    patches: tuple[Patch, ...]
    retired: tuple[RetiredPatch, ...] = ()
    path: Path = Field(Path("."), exclude=True, description="file it was read from")

    @field_validator("source_root")
    @classmethod
    def _absolute(cls, value: PurePosixPath) -> PurePosixPath:
        if not value.is_absolute() or ".." in value.parts:
            raise ValueError(f"must be an absolute path inside the image, got {str(value)!r}")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Patchset:
        seen: set[str] = set()
        for patch in self.patches:
            if patch.key in seen:
                raise ValueError(f"two patches share the id {patch.key!r}; give one an 'id:'")
            seen.add(patch.key)
        return self


class ChatTemplateFromModel(_Strict):
    """Derive the template from the model's own, with variables forced first."""

    from_: Literal["model"] = Field(alias="from")
    set: dict[str, bool | int | str] = Field(default_factory=dict)

    @field_validator("set")
    @classmethod
    def _identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a Jinja variable name")
        return value


class Model(_Strict):
    path: PurePosixPath = Field(description="model directory inside the container")
    host_path: Path | None = Field(None, description="same directory on the host; mounted ro")


class Healthcheck(_Strict):
    path: str = "/health"
    test: tuple[str, ...] = Field(default=(), description="compose test; default: curl the path")
    interval: str = "30s"
    timeout: str = "10s"
    retries: int = 5
    start_period: str = "600s"


class Service(BaseModel):
    """How the recipe's server runs: rendered into compose files.

    Keys patchkeeper does not model (`ulimits`, `runtime`, `ports`, `restart`,
    `logging`, `labels`, `devices`, `env_file`, ...) pass through to the compose
    service as given, validated against the Compose Specification's schema, so a
    misspelt key is still an error.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field("sglang", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    project: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="compose project name; default: the recipe's name",
    )
    container_name: str | None = None
    port: int = Field(30000, gt=0, lt=65536)
    model: Model
    command: tuple[str, ...] = ("python3", "-m", "sglang.launch_server")
    args: tuple[str, ...] = ()
    environment: dict[str, str] = Field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    chat_template: ChatTemplateFromModel | Path | None = None
    healthcheck: Healthcheck = Healthcheck()
    gpus: Literal["all"] | int | None = "all"
    ipc: str | None = "host"
    shm_size: str | None = None
    network_mode: str | None = "host"
    compose_file: Path | None = Field(
        None,
        description="your own compose file (relative to the recipe): `up` layers the overlay "
        "onto its service `name` instead of rendering one",
    )
    adopted: tuple[PurePosixPath, ...] = Field(
        (),
        description="in-container paths your compose file mounts hand patches at (written by "
        "`init`): each night the overlay's file replaces that mount, or it is removed",
    )

    @model_validator(mode="after")
    def _passed_through_keys_are_compose(self) -> Service:
        if "image" in self.passed_through:
            raise ValueError("'image': patchkeeper pins the image by digest; remove the key")
        errors = service_errors(self.passed_through)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def passed_through(self) -> dict[str, Any]:
        """The compose keys given beyond the modelled ones, in the order given."""
        return dict(self.model_extra or {})


TagPattern = Annotated[str, Field(description="regex with named groups date and sha")]

# The distribution spec caps tag names at 128 characters; anything longer is not a tag.
MAX_TAG_LENGTH = 128
MATCH_TIMEOUT_S = 0.25


class TagRegex:
    """A recipe's `tags:` regex, matched with a time limit.

    Registry tags are untrusted input and a pattern such as `(\\d+)+` backtracks
    exponentially on a long near-miss; `re` cannot be interrupted, the `regex`
    package's `timeout=` can, so a bad pattern is an error naming it, not a hang.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled = regex.compile(pattern)

    def _groups(self, tag: str, full: bool) -> Mapping[str, str] | None:
        if len(tag) > MAX_TAG_LENGTH:
            return None
        find = self._compiled.fullmatch if full else self._compiled.match
        try:
            found = find(tag, timeout=MATCH_TIMEOUT_S)
        except TimeoutError:
            from patchkeeper.errors import ConfigError

            raise ConfigError(
                f"tags: regex {self.pattern!r} took over {MATCH_TIMEOUT_S} s on the tag "
                f"{tag!r} (nested repetition backtracks); simplify the pattern"
            ) from None
        return None if found is None else {k: v or "" for k, v in found.groupdict().items()}

    def fullmatch(self, tag: str) -> Mapping[str, str] | None:
        return self._groups(tag, full=True)

    def match(self, tag: str) -> Mapping[str, str] | None:
        return self._groups(tag, full=False)


class Recipe(_Strict):
    """One image repository, the patchsets to keep on it, and its service."""

    name: str = Field(pattern=NAME_PATTERN)
    image: str = Field(min_length=1)
    tags: TagPattern
    patchsets: tuple[Path, ...] = Field(min_length=1)
    service: Service
    out: Path | None = Field(None, description="overlay root, relative to the recipe file")
    path: Path = Field(Path("."), exclude=True, description="file it was read from")

    @field_validator("tags")
    @classmethod
    def _named_groups(cls, value: str) -> str:
        try:
            groups = regex.compile(value).groupindex
        except (re.error, regex.error) as err:
            raise ValueError(f"not a valid regex: {err}") from None
        missing = {"date", "sha"} - set(groups)
        if missing:
            raise ValueError(f"regex lacks named group(s) {sorted(missing)}")
        return value

    @field_validator("image")
    @classmethod
    def _repository_only(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if "@" in value or ":" in last:
            raise ValueError("give the repository only (tags come from 'tags:')")
        return value

    def tag_pattern(self) -> TagRegex:
        return TagRegex(self.tags)
