"""The command line: thin wrappers over `patchkeeper.commands`.

Exit codes: 0 ok; 1 a patch does not apply; 2 bad input; 3 upstream,
registry or daemon unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from patchkeeper import __version__
from patchkeeper.commands._common import SourceKind, SourceOptions
from patchkeeper.errors import PatchkeeperError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Keep local patches on top of nightly LLM-server container images.",
)

RecipeOpt = Annotated[
    Path, typer.Option("--recipe", help="recipe YAML file", exists=False, dir_okay=False)
]
ImageOpt = Annotated[
    str | None,
    typer.Option("--image", help="image reference; default: newest tag matching the recipe"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--image-source",
        help="auto (local engine if it has the image, else registry), engine, registry, layout",
    ),
]
LayoutOpt = Annotated[
    Path | None, typer.Option("--layout", help="OCI layout directory or docker-save tarball")
]
PlatformOpt = Annotated[str, typer.Option("--platform", help="os/arch for multi-platform images")]


def _source(kind: str, layout: Path | None, platform: str) -> SourceOptions:
    try:
        return SourceOptions(SourceKind(kind), layout, platform)
    except ValueError:
        raise typer.BadParameter(
            f"{kind!r}: choose auto, engine, registry or layout", param_hint="--image-source"
        ) from None


def _guarded(as_json: bool, action: Callable[[], int]) -> None:
    """Run a command; map patchkeeper errors to their exit codes with a clear message."""
    try:
        code = action()
    except PatchkeeperError as err:
        if as_json:
            typer.echo(json.dumps({"error": str(err), "exit_code": err.exit_code}))
        else:
            typer.secho(f"error: {err}", err=True, fg="red")
        raise typer.Exit(err.exit_code) from None
    raise typer.Exit(code)


@app.command()
def sync(
    recipe: RecipeOpt,
    image: ImageOpt = None,
    out: Annotated[Path, typer.Option("--out", help="overlay root")] = Path("overlays"),
    as_json: JsonOpt = False,
    image_source: SourceOpt = "auto",
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
    conflicts: Annotated[
        Path | None,
        typer.Option("--conflicts", help="on conflict, write diff3-marked files here"),
    ] = None,
) -> None:
    """Port the recipe's patches onto one image and write its read-only overlay."""
    from patchkeeper.commands import sync as command

    options = _source(image_source, layout, platform)
    _guarded(as_json, lambda: command.run(recipe, image, out, as_json, options, conflicts))


@app.command()
def resolve(
    recipe: RecipeOpt,
    conflicts: Annotated[
        Path, typer.Option("--conflicts", help="the directory `sync --conflicts` wrote")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Record the hand-resolved files of `sync --conflicts DIR` beside their patchsets."""
    from patchkeeper.commands import resolve as command

    _guarded(as_json, lambda: command.run(recipe, conflicts, as_json))


@app.command()
def status(
    recipe: RecipeOpt,
    image: ImageOpt = None,
    as_json: JsonOpt = False,
    image_source: SourceOpt = "auto",
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
    tags: Annotated[
        int | None, typer.Option("--tags", help="timeline: patches x the last N nightly tags")
    ] = None,
    tags_from: Annotated[
        Path | None, typer.Option("--tags-from", help="timeline: tag names from this file")
    ] = None,
    verify_commits: Annotated[
        bool, typer.Option("--verify-commits", help="timeline: read each commit from its image")
    ] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="timeline as Markdown")] = False,
) -> None:
    """Show each patch's state for one image, or (--tags N) across nightlies; writes nothing."""
    options = _source(image_source, layout, platform)
    if tags is not None or tags_from is not None:
        from patchkeeper.commands import timeline

        output = "json" if as_json else "markdown" if markdown else "table"
        count = tags if tags is not None else 10**6
        _guarded(
            as_json,
            lambda: timeline.run(recipe, count, tags_from, verify_commits, options, output),
        )
    from patchkeeper.commands import status as command

    _guarded(as_json, lambda: command.run(recipe, image, as_json, options))


@app.command()
def prune(
    recipe: RecipeOpt,
    tags: Annotated[int, typer.Option("--tags", help="track the last N nightly tags")] = 14,
    tags_from: Annotated[
        Path | None, typer.Option("--tags-from", help="tag names from this file")
    ] = None,
    write: Annotated[bool, typer.Option("--write", help="edit the patchset file")] = False,
    witness_report: Annotated[
        Path | None,
        typer.Option(
            "--witness-report", help="a `verify --json` report: retire what it marks retirable"
        ),
    ] = None,
    image_source: SourceOpt = "auto",
) -> None:
    """Retire patches every tracked nightly contains, or whose witness passes on vanilla."""
    from patchkeeper.commands import prune as command

    options = _source(image_source, None, "linux/amd64")
    _guarded(False, lambda: command.run(recipe, tags, tags_from, options, write, witness_report))


@app.command()
def compose(
    overlay: Annotated[
        list[Path], typer.Option("--overlay", help="an overlay directory (repeat for a fleet)")
    ],
) -> None:
    """Print the docker-compose override of one or several overlays."""
    from patchkeeper.commands import compose as command

    _guarded(False, lambda: command.run(overlay))


OutOpt = Annotated[Path, typer.Option("--out", help="overlay root")]
OverlayOpt = Annotated[
    Path | None, typer.Option("--overlay", help="an overlay directory (default: sync the recipe)")
]
ComposeFileOpt = Annotated[
    Path | None,
    typer.Option("--compose", help="your own compose file: layer the overlay onto it"),
]
ServiceOpt = Annotated[
    str | None, typer.Option("--service", help="the service of --compose to run patched")
]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", help="compose project (default: the file's own)")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="say what would change; change nothing")]


@app.command()
def up(
    recipe: Annotated[Path | None, typer.Option("--recipe", help="recipe YAML file")] = None,
    image: ImageOpt = None,
    overlay: OverlayOpt = None,
    out: OutOpt = Path("overlays"),
    compose_file: ComposeFileOpt = None,
    service: ServiceOpt = None,
    project: ProjectOpt = None,
    deadline: Annotated[
        float, typer.Option("--deadline", help="seconds to wait for the service's health")
    ] = 900.0,
    check: Annotated[
        list[str] | None, typer.Option("--check", help="smoke check after health (repeatable)")
    ] = None,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="health only, no smoke")] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="where the smoke checks reach the server")
    ] = None,
    dry_run: DryRunOpt = False,
    image_source: SourceOpt = "auto",
    layout: LayoutOpt = None,
    platform: PlatformOpt = "linux/amd64",
) -> None:
    """Move the running server to the recipe's newest overlay; roll back on failure."""
    from patchkeeper.commands import up as command

    source = _source(image_source, layout, platform)

    def run() -> int:
        options = command.options(out, compose_file, service, project, dry_run).with_run(
            deadline, command.checks_named(check or [], no_smoke), url
        )
        return command.run(recipe, image, overlay, options, source)

    _guarded(False, run)


@app.command()
def down(
    recipe: Annotated[Path | None, typer.Option("--recipe", help="recipe YAML file")] = None,
    overlay: OverlayOpt = None,
    out: OutOpt = Path("overlays"),
    compose_file: ComposeFileOpt = None,
    service: ServiceOpt = None,
    project: ProjectOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Stop and remove the service `up` brought up."""
    from patchkeeper.commands import up as command

    def run() -> int:
        options = command.options(out, compose_file, service, project, dry_run)
        return command.down(recipe, overlay, options)

    _guarded(False, run)


@app.command()
def init(
    from_compose: Annotated[
        Path, typer.Option("--from-compose", help="the compose file you run today")
    ],
    service: Annotated[str, typer.Option("--service", help="its service to keep patched")],
    source_root: Annotated[
        str, typer.Option("--source-root", help="the upstream checkout inside the image")
    ] = "/sgl-workspace/sglang",
    github: Annotated[
        str | None, typer.Option("--github", help="upstream owner/name")
    ] = "sgl-project/sglang",
    git_url: Annotated[str | None, typer.Option("--git", help="upstream clone URL")] = None,
    pr: Annotated[
        list[str] | None,
        typer.Option("--pr", help="PATH=N: the mounted file at PATH is upstream PR N"),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="where to write them")] = Path("."),
    name: Annotated[str, typer.Option("--name", help="recipe name")] = "sglang",
) -> None:
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
    _guarded(
        False,
        lambda: command.run(from_compose, service, root, upstream, prs, directory, name),
    )


@app.command()
def gc(
    out: OutOpt = Path("overlays"),
    keep: Annotated[int, typer.Option("--keep", help="keep each recipe's last N syncs")] = 3,
    delete: Annotated[bool, typer.Option("--delete", help="remove (default: dry run)")] = False,
) -> None:
    """Remove store directories no link, recent sync or container refers to."""
    from patchkeeper.commands import gc as command

    _guarded(False, lambda: command.run(out, keep, delete))


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="where to build it")] = Path(".demo"),
) -> None:
    """Build the offline demo (upstream repo + nightly image) and sync it."""
    import patchkeeper.commands.demo as command

    _guarded(False, lambda: command.run(workdir))


@app.command()
def smoke(
    base_url: Annotated[str, typer.Option("--base-url", help="e.g. http://127.0.0.1:8072")],
    as_json: JsonOpt = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="write JUnit XML here")] = None,
    check: Annotated[
        list[str] | None, typer.Option("--check", help="run only these checks (repeatable)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="default: first listed")] = None,
    speculative: Annotated[
        str | None, typer.Option("--speculative", help="expected algorithm, e.g. NEXTN")
    ] = None,
    min_accept_length: Annotated[float, typer.Option("--min-accept-length")] = 1.0,
    claude_cli: Annotated[
        str | None, typer.Option("--claude-cli", help="path of the Claude Code CLI to run")
    ] = None,
) -> None:
    """Run the protocol smoke suite against an Anthropic-compatible endpoint."""
    from patchkeeper.commands import smoke as command
    from patchkeeper.verify.smoke import ALL, SmokeOptions

    unknown = sorted(set(check or []) - set(ALL))
    if unknown:
        raise typer.BadParameter(f"unknown check(s) {unknown}; known: {ALL}", param_hint="--check")
    options = SmokeOptions(
        base_url,
        model=model,
        speculative_algorithm=speculative,
        min_accept_length=min_accept_length,
        claude_cli=claude_cli,
    )
    _guarded(as_json, lambda: command.run(options, list(check or []), as_json, junit))


@app.command()
def verify(
    overlay: Annotated[Path, typer.Option("--overlay", help="an overlay directory")],
    tier: Annotated[
        str,
        typer.Option("--tier", help="adapter (no GPU, no model) or boot (the real server)"),
    ] = "adapter",
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="image (in the locked image), host (venvs here; boot: CPU tiny model) "
            "or auto (image when the local engine has it)",
        ),
    ] = "auto",
    sglang_version: Annotated[
        str | None,
        typer.Option(
            "--sglang-version", help="host adapter tier: this release, not the image's own tree"
        ),
    ] = None,
    chat_template: Annotated[
        Path | None, typer.Option("--chat-template", help="default: the overlay's, else Qwen-like")
    ] = None,
    claude_cli: Annotated[
        str | None, typer.Option("--claude-cli", help="run the Claude Code CLI check with it")
    ] = None,
    deadline: Annotated[
        float, typer.Option("--deadline", help="boot tier: seconds to wait for the server's health")
    ] = 1800.0,
    as_json: JsonOpt = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="write JUnit XML here")] = None,
    allow_unproven: Annotated[
        bool, typer.Option("--allow-unproven", help="exit 0 even if a witness proves nothing")
    ] = False,
) -> None:
    """Prove an overlay: run the suite on vanilla and overlaid SGLang, judge witnesses."""
    from patchkeeper.commands import verify as command
    from patchkeeper.verify.tiers import Settings

    settings = Settings(sglang_version, chat_template, claude_cli, deadline)
    _guarded(
        as_json,
        lambda: command.run(overlay, tier, runtime, settings, as_json, junit, allow_unproven),
    )


@app.command()
def nightly(
    recipe: Annotated[
        list[str],
        typer.Option(
            "--recipe",
            envvar="PATCHKEEPER_RECIPES",
            help="recipe file (repeatable; the variable separates them with whitespace)",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", envvar="PATCHKEEPER_OUT", help="overlay root (committed)")
    ] = Path("overlays"),
    verify_tier: Annotated[
        str,
        typer.Option(
            "--verify", envvar="PATCHKEEPER_VERIFY", help="adapter (prove each overlay) or none"
        ),
    ] = "adapter",
    runtime: Annotated[
        str, typer.Option("--runtime", help="adapter tier: auto, image or host (see verify)")
    ] = "auto",
    sglang_version: Annotated[
        str | None,
        typer.Option(
            "--sglang-version", help="host adapter tier: this release, not the image's own tree"
        ),
    ] = None,
    branch: Annotated[
        str, typer.Option("--branch", envvar="PATCHKEEPER_BRANCH", help="bot branch to commit to")
    ] = "patchkeeper/nightly",
    base: Annotated[
        str | None, typer.Option("--base", help="pull request base; default: checked-out branch")
    ] = None,
    repository: Annotated[
        str | None,
        typer.Option(
            "--repository",
            envvar="GITHUB_REPOSITORY",
            help="owner/name for the pull request and issues; unset: publish nothing to GitHub",
        ),
    ] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="push the bot branch")] = True,
    image_source: SourceOpt = "auto",
) -> None:
    """Sync and prove every recipe, then commit, open or update a PR, and report."""
    from patchkeeper.commands import nightly as command
    from patchkeeper.commands.verify import runtime_named
    from patchkeeper.verify.tiers import Settings

    if verify_tier not in ("adapter", "none"):
        raise typer.BadParameter(f"{verify_tier!r}: choose adapter or none", param_hint="--verify")
    options = _source(image_source, None, "linux/amd64")
    publish = command.Publish(branch, base, "origin", repository, push)

    def run() -> int:
        proving = None
        if verify_tier == "adapter":
            proving = command.Proving(runtime_named(runtime), Settings(sglang_version))
        return command.run([Path(r) for r in recipe], out, options, proving, publish)

    _guarded(False, run)


@app.command()
def version() -> None:
    """Print patchkeeper's version."""
    typer.echo(__version__)


def main() -> None:
    app()
