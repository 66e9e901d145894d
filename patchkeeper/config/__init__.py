"""Stage 1 of the pipeline: recipes and patchsets, validated."""

from patchkeeper.config.load import load_patchset, load_patchsets, load_recipe
from patchkeeper.config.models import (
    ChatTemplateFromModel,
    Patch,
    Patchset,
    Recipe,
    Service,
    Upstream,
)

__all__ = [
    "ChatTemplateFromModel",
    "Patch",
    "Patchset",
    "Recipe",
    "Service",
    "Upstream",
    "load_patchset",
    "load_patchsets",
    "load_recipe",
]
