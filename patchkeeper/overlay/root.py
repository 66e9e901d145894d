"""Where a recipe's overlays live: one rule for every command that takes `--out`.

1. `--out DIR`, when given (relative to the working directory, as any path argument);
2. else `PATCHKEEPER_OUT`;
3. else the recipe's `out:` key, relative to the recipe file;
4. else `overlays/` beside the recipe file.

So `up` from a cron's `$HOME` and from the checkout find the same `current`. Earlier
releases defaulted to `./overlays` in the working directory: when the recipe's own
root holds nothing yet and `./overlays/<recipe>/` does, that one is used, with a
notice naming the move (or the `--out`) that makes the answer the same from anywhere.
Commands given `--overlay DIR` use that store's own root instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from patchkeeper.config.load import load_recipe
from patchkeeper.config.models import Recipe
from patchkeeper.errors import ConfigError
from patchkeeper.ui import err_console

ENV = "PATCHKEEPER_OUT"
DEFAULT = "overlays"


def overlays_root(recipe: Recipe | None, given: Path | None) -> Path:
    """The overlay root for `recipe` (absolute), by the rule above.

    Without a recipe (e.g. `gc` over a whole root): `--out`, `PATCHKEEPER_OUT`, else
    `./overlays`."""
    if given is not None:
        return given.absolute()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).absolute()
    if recipe is None:
        return Path(DEFAULT).absolute()
    beside = recipe.path.absolute().parent
    root = beside / (recipe.out if recipe.out is not None else DEFAULT)
    legacy = Path(DEFAULT).absolute()
    if legacy != root and not (root / recipe.name).exists() and (legacy / recipe.name).is_dir():
        err_console.print(
            f"note: using {legacy} (the working directory's, as before); {recipe.path}'s "
            f"overlays belong in {root}: move it there (`mv {legacy} {root}`) or pass --out",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        return legacy
    return root


def shared_root(recipes: list[Path], given: Path | None) -> Path:
    """The one overlay root `nightly` commits: `--out`, else every recipe's, which must agree.

    A recipe that does not load is left to `nightly`, which reports it in its row."""
    roots = set()
    for recipe in recipes if given is None else []:
        try:
            roots.add(overlays_root(load_recipe(recipe), None))
        except ConfigError:
            continue
    if not roots:
        return overlays_root(None, given)
    if len(roots) > 1:
        listed = ", ".join(sorted(map(str, roots)))
        raise ConfigError(f"the recipes' overlay roots differ ({listed}): give --out")
    return roots.pop()
