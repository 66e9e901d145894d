"""The command line: thin wrappers over `patchkeeper.commands`.

Conventions for every command (adding one needs nothing beyond them):
- The body imports `patchkeeper.commands.<name>` lazily and *returns* its exit code;
  raise a `PatchkeeperError` subclass for expected failures. `GuardedGroup`
  (patchkeeper/boundary.py) wraps every command: error -> exit code, `--json` ->
  a JSON error document, anything unexpected -> exit 70 and a crash log.
- The old `_guarded(as_json, lambda: ...)` wrapper is gone: `return command.run(...)`.
- Reuse the shared option types below (`RecipeOpt`, `JsonOpt`, `SourceOpt`, ...);
  enumerated options are `StrEnum`s, so Typer validates and lists the choices.
- Help shows no Python types: `conventional_metavars` gives flags no metavar and
  every other option its name in capitals, unless the option sets `metavar=`.
- `--json` documents go through `ui.print_document(kind, body)` (versioned);
  human output through `ui.out_console`/`err_console` (unclipped when piped).
- Logging: `logging.getLogger(__name__)`; `-v`/`-q` set the level, output redacted.

Exit codes: see patchkeeper/errors.py (0 ok, 1 conflict or failed check, 2 bad
input, 3 unreachable, 70 internal error, 130 interrupted).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patchkeeper import __version__
from patchkeeper.boundary import GuardedGroup
from patchkeeper.image.model import SourceKind
from patchkeeper.verify.catalog import CHECK_DEADLINE_S, MAX_REPLY_BYTES, STREAM_DEADLINE_S, Runtime
from patchkeeper.verify.catalog import CHECK_NAMES as SMOKE_CHECKS

if TYPE_CHECKING:
    from patchkeeper.commands._common import SourceOptions


def conventional_metavars(command: Any) -> None:
    """Flags get no metavar, other options their name in capitals (no `<bool>`, `<str>`)."""
    for sub in getattr(command, "commands", {}).values():
        conventional_metavars(sub)
    for param in command.params:
        kind = getattr(param, "param_type_name", "")
        if kind == "argument" and param.metavar is not None:  # Typer adds `<str>` to those
            param.display_type_rich = lambda ctx: None
        if kind != "option" or param.metavar is not None:
            continue
        choice = getattr(getattr(param, "type_descriptor", None), "is_choice", False)
        if param.is_flag or param.count:
            param.metavar = ""
        elif not choice:
            param.metavar = (param.name or "value").upper()


class Group(GuardedGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conventional_metavars(self)


app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Keep local patches on top of nightly LLM-server container images.",
)


class Tier(StrEnum):
    ADAPTER = "adapter"
    BOOT = "boot"


class NightlyVerify(StrEnum):
    ADAPTER = "adapter"
    NONE = "none"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"patchkeeper {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="log more (-vv: debug)")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="errors only: no progress, notes or logs")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Keep local patches on top of nightly LLM-server container images."""
    from patchkeeper.ui import configure_logging, err_console

    configure_logging(-1 if quiet else verbose)
    err_console.quiet = quiet  # progress and notes; errors are printed regardless


RecipeOpt = Annotated[
    Path, typer.Option("--recipe", help="recipe YAML file", metavar="FILE", dir_okay=False)
]
ImageOpt = Annotated[
    str | None,
    typer.Option(
        "--image", metavar="REF", help="image reference; default: newest tag matching the recipe"
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="DIR",
        envvar="PATCHKEEPER_OUT",
        help="overlay root; default: the recipe's `out:`, else overlays/ beside the recipe",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
SourceOpt = Annotated[
    SourceKind,
    typer.Option(
        "--image-source",
        help="auto: the local engine if it has the image, else the registry",
    ),
]
LayoutOpt = Annotated[
    Path | None,
    typer.Option("--layout", metavar="PATH", help="OCI layout directory or docker-save tarball"),
]
PlatformOpt = Annotated[
    str, typer.Option("--platform", metavar="OS/ARCH[/VARIANT]", help="for multi-platform images")
]
RuntimeOpt = Annotated[
    Runtime,
    typer.Option(
        "--runtime",
        help="image (in the locked image), host (venvs here; boot: CPU tiny model) "
        "or auto (image when the local engine has it)",
    ),
]
SglangVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--sglang-version",
        metavar="VERSION",
        help="host adapter tier: run this release instead of the image's own tree",
    ),
]
JunitOpt = Annotated[
    Path | None, typer.Option("--junit", metavar="FILE", help="write JUnit XML here")
]
ClaudeCliOpt = Annotated[
    str | None,
    typer.Option(
        "--claude-cli", metavar="PATH", help="run the claude_code check with this Claude Code CLI"
    ),
]


def _source(kind: SourceKind | str, layout: Path | None, platform: str) -> SourceOptions:
    from patchkeeper.commands._common import SourceOptions

    return SourceOptions(SourceKind(kind), layout, platform)


@app.command()
def sync(
    recipe: RecipeOpt,
    image: ImageOpt = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    image_source: SourceOpt = SourceKind.AUTO,
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
    conflicts: Annotated[
        Path | None,
        typer.Option(
            "--conflicts", metavar="DIR", help="on conflict, write diff3-marked files here"
        ),
    ] = None,
) -> int:
    """Port the recipe's patches onto one image and write its read-only overlay."""
    from patchkeeper.commands import sync as command

    source = _source(image_source, layout, platform)
    return command.run(recipe, image, out, as_json, source, conflicts)


@app.command()
def resolve(
    recipe: RecipeOpt,
    conflicts: Annotated[
        Path,
        typer.Option("--conflicts", metavar="DIR", help="the directory `sync --conflicts` wrote"),
    ],
    as_json: JsonOpt = False,
) -> int:
    """Record the hand-resolved files of `sync --conflicts DIR` beside their patchsets."""
    from patchkeeper.commands import resolve as command

    return command.run(recipe, conflicts, as_json)


@app.command()
def status(
    recipe: RecipeOpt,
    image: ImageOpt = None,
    as_json: JsonOpt = False,
    image_source: SourceOpt = SourceKind.AUTO,
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
    tags: Annotated[
        int | None,
        typer.Option("--tags", min=1, metavar="N", help="timeline: patches x the last N tags"),
    ] = None,
    tags_from: Annotated[
        Path | None,
        typer.Option("--tags-from", metavar="FILE", help="timeline: tag names from this file"),
    ] = None,
    verify_commits: Annotated[
        bool, typer.Option("--verify-commits", help="timeline: read each commit from its image")
    ] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="timeline as Markdown")] = False,
) -> int:
    """Show each patch's state for one image, or (--tags N) across nightlies; writes nothing."""
    options = _source(image_source, layout, platform)
    if tags is not None or tags_from is not None:
        from patchkeeper.commands import timeline

        output = "json" if as_json else "markdown" if markdown else "table"
        count = tags if tags is not None else 10**6
        return timeline.run(recipe, count, tags_from, verify_commits, options, output)
    from patchkeeper.commands import status as command

    return command.run(recipe, image, as_json, options)


@app.command()
def show(
    patch: Annotated[str, typer.Argument(metavar="PATCH", help="patch id, pr-N or N")],
    recipe: RecipeOpt,
    image: ImageOpt = None,
    image_source: SourceOpt = SourceKind.AUTO,
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
) -> int:
    """Print a patch's diff as it would be ported onto the image (vanilla -> overlay)."""
    from patchkeeper.commands import show as command

    return command.run(recipe, patch, image, _source(image_source, layout, platform))


@app.command()
def validate(
    recipe: Annotated[
        list[Path],
        typer.Argument(metavar="RECIPE...", help="recipe files (their patchsets are checked too)"),
    ],
    as_json: JsonOpt = False,
) -> int:
    """Check recipes and patchsets offline: schema, witness names, exclude globs."""
    from patchkeeper.commands import validate as command

    return command.run(recipe, as_json)


@app.command()
def doctor(
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe", metavar="FILE", help="also check its registry, upstream, model, port"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Check this machine for what patchkeeper needs, each problem with its fix."""
    from patchkeeper.commands import doctor as command

    return command.run(recipe, as_json)


@app.command()
def prune(
    recipe: RecipeOpt,
    tags: Annotated[
        int, typer.Option("--tags", min=1, metavar="N", help="track the last N nightly tags")
    ] = 14,
    tags_from: Annotated[
        Path | None, typer.Option("--tags-from", metavar="FILE", help="tag names from this file")
    ] = None,
    write: Annotated[bool, typer.Option("--write", help="edit the patchset file")] = False,
    witness_report: Annotated[
        Path | None,
        typer.Option(
            "--witness-report",
            metavar="FILE",
            help="a `verify --json` report: retire what it marks retirable",
        ),
    ] = None,
    image_source: SourceOpt = SourceKind.AUTO,
    as_json: JsonOpt = False,
) -> int:
    """Retire patches every tracked nightly contains, or whose witness passes on vanilla."""
    from patchkeeper.commands import prune as command

    options = _source(image_source, None, "linux/amd64")
    return command.run(recipe, tags, tags_from, options, write, witness_report, as_json)


@app.command()
def compose(
    overlay: Annotated[
        list[Path],
        typer.Option("--overlay", metavar="DIR", help="an overlay directory (repeat for a fleet)"),
    ],
) -> int:
    """Print the docker-compose override of one or several overlays."""
    from patchkeeper.commands import compose as command

    return command.run(overlay)


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", metavar="DIR", help="where to build it")
    ] = Path(".demo"),
) -> int:
    """Build the offline demo (upstream repo + nightly image) and sync it."""
    import patchkeeper.commands.demo as command

    return command.run(workdir)


def _smoke_checks(names: list[str] | None) -> list[str]:
    unknown = sorted(set(names or []) - set(SMOKE_CHECKS))
    if unknown:
        raise typer.BadParameter(f"unknown check(s) {', '.join(unknown)}; choose from {CHOICES}")
    return names or []


CHOICES = ", ".join(SMOKE_CHECKS)


@app.command()
def smoke(
    base_url: Annotated[
        str, typer.Option("--base-url", metavar="URL", help="e.g. http://127.0.0.1:8072")
    ],
    as_json: JsonOpt = False,
    junit: JunitOpt = None,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            metavar="NAME",
            callback=_smoke_checks,
            autocompletion=lambda: SMOKE_CHECKS,
            help=f"run only these checks (repeatable): {CHOICES}",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="default: first listed")
    ] = None,
    speculative: Annotated[
        str | None,
        typer.Option("--speculative", metavar="ALGORITHM", help="expected algorithm, e.g. NEXTN"),
    ] = None,
    min_accept_length: Annotated[
        float,
        typer.Option("--min-accept-length", metavar="X", help="speculative: least accept length"),
    ] = 1.0,
    claude_cli: ClaudeCliOpt = None,
    check_deadline: Annotated[
        float,
        typer.Option(
            "--check-deadline", metavar="SECONDS", min=0.1, help="the most one check may take"
        ),
    ] = CHECK_DEADLINE_S,
    stream_deadline: Annotated[
        float,
        typer.Option(
            "--stream-deadline",
            metavar="SECONDS",
            min=0.1,
            help="the most one reply (a stream, a body) may take",
        ),
    ] = STREAM_DEADLINE_S,
    max_reply_bytes: Annotated[
        int,
        typer.Option(
            "--max-reply-bytes", metavar="BYTES", min=1, help="the most one reply may hold"
        ),
    ] = MAX_REPLY_BYTES,
) -> int:
    """Run the protocol smoke suite against an Anthropic-compatible endpoint."""
    from patchkeeper.commands import smoke as command
    from patchkeeper.verify.smoke import SmokeOptions

    options = SmokeOptions(
        base_url,
        model=model,
        speculative_algorithm=speculative,
        min_accept_length=min_accept_length,
        claude_cli=claude_cli,
        check_deadline=check_deadline,
        stream_deadline=stream_deadline,
        max_body=max_reply_bytes,
    )
    return command.run(options, list(check or []), as_json, junit)


@app.command()
def verify(
    overlay: Annotated[Path, typer.Option("--overlay", metavar="DIR", help="an overlay directory")],
    tier: Annotated[
        Tier, typer.Option("--tier", help="adapter (no GPU, no model) or boot (the real server)")
    ] = Tier.ADAPTER,
    runtime: RuntimeOpt = Runtime.AUTO,
    sglang_version: SglangVersionOpt = None,
    chat_template: Annotated[
        Path | None,
        typer.Option(
            "--chat-template", metavar="FILE", help="default: the overlay's, else Qwen-like"
        ),
    ] = None,
    claude_cli: ClaudeCliOpt = None,
    deadline: Annotated[
        float,
        typer.Option(
            "--deadline", metavar="SECONDS", help="boot tier: how long to wait for /health"
        ),
    ] = 1800.0,
    as_json: JsonOpt = False,
    junit: JunitOpt = None,
    allow_unproven: Annotated[
        bool, typer.Option("--allow-unproven", help="exit 0 even if a witness proves nothing")
    ] = False,
) -> int:
    """Prove an overlay: run the suite on vanilla and overlaid SGLang, judge witnesses."""
    from patchkeeper.commands import verify as command
    from patchkeeper.verify.tiers import Settings

    settings = Settings(sglang_version, chat_template, claude_cli, deadline)
    return command.run(overlay, tier.value, runtime, settings, as_json, junit, allow_unproven)


@app.command()
def nightly(
    recipe: Annotated[
        list[str],
        typer.Option(
            "--recipe",
            metavar="FILE",
            envvar="PATCHKEEPER_RECIPES",
            help="recipe file (repeatable; the variable separates them with whitespace)",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            envvar="PATCHKEEPER_OUT",
            help="overlay root (committed); default: as for sync, the same for every recipe",
        ),
    ] = None,
    verify_tier: Annotated[
        NightlyVerify,
        typer.Option(
            "--verify", envvar="PATCHKEEPER_VERIFY", help="adapter: prove each overlay; none: skip"
        ),
    ] = NightlyVerify.ADAPTER,
    runtime: Annotated[
        Runtime,
        typer.Option(
            "--runtime", envvar="PATCHKEEPER_RUNTIME", help="adapter tier's runtime (see verify)"
        ),
    ] = Runtime.AUTO,
    sglang_version: Annotated[
        str | None,
        typer.Option(
            "--sglang-version",
            metavar="VERSION",
            envvar="PATCHKEEPER_SGLANG_VERSION",
            help="host adapter tier: run this release instead of the image's own tree",
        ),
    ] = None,
    branch: Annotated[
        str,
        typer.Option(
            "--branch", metavar="NAME", envvar="PATCHKEEPER_BRANCH", help="bot branch to commit to"
        ),
    ] = "patchkeeper/nightly",
    base: Annotated[
        str | None,
        typer.Option(
            "--base", metavar="BRANCH", help="pull request base; default: checked-out branch"
        ),
    ] = None,
    repository: Annotated[
        str | None,
        typer.Option(
            "--repository",
            metavar="OWNER/NAME",
            envvar="GITHUB_REPOSITORY",
            help="for the pull request and issues; unset: publish nothing to GitHub",
        ),
    ] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="push the bot branch")] = True,
    image_source: Annotated[
        SourceKind,
        typer.Option(
            "--image-source", envvar="PATCHKEEPER_IMAGE_SOURCE", help="where images are read from"
        ),
    ] = SourceKind.AUTO,
    outputs: Annotated[
        Path | None,
        typer.Option(
            "--outputs",
            metavar="FILE",
            envvar="GITHUB_OUTPUT",
            help="append step outputs (pr-number, pr-url, changed, conflicts, report) here",
        ),
    ] = None,
    allow_unproven: Annotated[
        bool,
        typer.Option(
            "--allow-unproven",
            envvar="PATCHKEEPER_ALLOW_UNPROVEN",
            help="exit 0 even if a witness proves nothing",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="check and plan, say what would be done; write and publish nothing"
        ),
    ] = False,
) -> int:
    """Sync and prove every recipe, then commit, open or update a PR, and report."""
    from patchkeeper.commands import nightly as command
    from patchkeeper.verify.tiers import Settings

    proving = None
    if verify_tier is NightlyVerify.ADAPTER:
        proving = command.Proving(runtime, Settings(sglang_version), allow_unproven)
    publish = command.Publish(branch, base, "origin", repository, push)
    options = _source(image_source, None, "linux/amd64")
    from patchkeeper.overlay.root import shared_root

    recipes = [Path(r) for r in recipe]
    root = shared_root(recipes, out)
    return command.run(recipes, root, options, proving, publish, outputs, dry_run)


OverlayOpt = Annotated[
    Path | None,
    typer.Option(
        "--overlay", metavar="DIR", help="an overlay directory (default: sync the recipe)"
    ),
]
ComposeFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--compose", metavar="FILE", help="your own compose file: layer the overlay onto it"
    ),
]
ServiceOpt = Annotated[
    str | None,
    typer.Option("--service", metavar="NAME", help="the service of --compose to run patched"),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", metavar="NAME", help="compose project (default: the file's own)"),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="say what would change; change nothing")]
OptionalRecipeOpt = Annotated[
    Path | None, typer.Option("--recipe", metavar="FILE", help="recipe YAML file")
]


@app.command()
def up(
    recipe: OptionalRecipeOpt = None,
    image: ImageOpt = None,
    overlay: OverlayOpt = None,
    out: OutOpt = None,
    compose_file: ComposeFileOpt = None,
    service: ServiceOpt = None,
    project: ProjectOpt = None,
    deadline: Annotated[
        float,
        typer.Option("--deadline", metavar="SECONDS", help="how long to wait for its health"),
    ] = 900.0,
    check: Annotated[
        list[str] | None,
        typer.Option("--check", metavar="NAME", help="smoke check after health (repeatable)"),
    ] = None,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="health only, no smoke")] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", metavar="URL", help="where the smoke checks reach the server"),
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    image_source: SourceOpt = SourceKind.AUTO,
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
) -> int:
    """Move the running server to the recipe's newest overlay; roll back on failure."""
    from patchkeeper.commands import up as command

    source = _source(image_source, layout, platform)
    options = command.options(out, compose_file, service, project, dry_run, as_json).with_run(
        deadline, command.checks_named(check or [], no_smoke), url
    )
    return command.run(recipe, image, overlay, options, source)


@app.command()
def down(
    recipe: OptionalRecipeOpt = None,
    overlay: OverlayOpt = None,
    out: OutOpt = None,
    compose_file: ComposeFileOpt = None,
    service: ServiceOpt = None,
    project: ProjectOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Stop and remove the service `up` brought up."""
    from patchkeeper.commands import down as command
    from patchkeeper.commands.up import options as up_options

    options = up_options(out, compose_file, service, project, dry_run, as_json)
    return command.run(recipe, overlay, options)


@app.command()
def init(
    from_compose: Annotated[
        Path,
        typer.Option("--from-compose", metavar="FILE", help="the compose file you run today"),
    ],
    service: Annotated[
        str, typer.Option("--service", metavar="NAME", help="its service to keep patched")
    ],
    source_root: Annotated[
        str,
        typer.Option("--source-root", metavar="PATH", help="the upstream checkout in the image"),
    ] = "/sgl-workspace/sglang",
    github: Annotated[
        str | None, typer.Option("--github", metavar="OWNER/NAME", help="upstream owner/name")
    ] = "sgl-project/sglang",
    git_url: Annotated[
        str | None, typer.Option("--git", metavar="URL", help="upstream clone URL")
    ] = None,
    pr: Annotated[
        list[str] | None,
        typer.Option(
            "--pr",
            metavar="PATH=N",
            help="the file mounted at PATH (in-container, or its path in the repository) "
            "is upstream PR N",
        ),
    ] = None,
    directory: Annotated[
        Path, typer.Option("--dir", metavar="DIR", help="where to write them")
    ] = Path("."),
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="recipe name")] = "sglang",
    as_json: JsonOpt = False,
) -> int:
    """Write a recipe and patchset from a compose service with hand-patched mounts."""
    from pathlib import PurePosixPath

    from patchkeeper.commands import init as command

    prs = {}
    for item in pr or []:
        path, sep, number = item.rpartition("=")
        if not sep or not number.isdigit():
            raise typer.BadParameter(f"{item!r}: expected PATH=N", param_hint="--pr")
        prs[path] = int(number)
    upstream = {"git": git_url} if git_url else {"github": github or ""}
    root = PurePosixPath(source_root)
    return command.run(from_compose, service, root, upstream, prs, directory, name, as_json)


@app.command()
def gc(
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", metavar="FILE", help="its overlay root (default: --out's rule)"),
    ] = None,
    out: OutOpt = None,
    keep: Annotated[
        int, typer.Option("--keep", metavar="N", help="keep each recipe's last N syncs")
    ] = 3,
    delete: Annotated[bool, typer.Option("--delete", help="remove (default: dry run)")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Remove store directories (and their tag links) that no `current` or `previous`
    link, recent sync or container needs."""
    from patchkeeper.commands import gc as command
    from patchkeeper.config.load import load_recipe
    from patchkeeper.overlay.root import overlays_root

    return command.run(
        overlays_root(load_recipe(recipe) if recipe else None, out), keep, delete, as_json
    )


@app.command()
def version() -> None:
    """Print patchkeeper's version (also: --version)."""
    typer.echo(__version__)


def main() -> None:
    app()
