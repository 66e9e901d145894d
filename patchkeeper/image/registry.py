"""Image source that reads straight from an OCI registry: no daemon, fewest bytes.

`resolve` reads the manifest (an index resolved to one platform) and the config blob
through `registry_client`; layers are streamed through the layer reader, top down,
stopping early (see `layers`). A partly read layer is trusted only as what this
repository of this registry served for this verified manifest.
"""

from __future__ import annotations

import functools
from typing import Any

from patchkeeper.image import digests
from patchkeeper.image.layered import LayeredSource, read_config
from patchkeeper.image.manifests import choose_platform, image_parts, is_index
from patchkeeper.image.model import ImageRef, ResolvedImage
from patchkeeper.image.registry_access import Deadlines, split_repository
from patchkeeper.image.registry_client import RegistryClient
from patchkeeper.image.verified import LayerBlob


class RegistrySource(LayeredSource):
    """Reads images straight from their registry, layers top-down, stopping early."""

    name = "registry"

    def __init__(
        self, platform: str = "linux/amd64", progress: Any = None, attempts: int = 5
    ) -> None:
        super().__init__(progress)
        self.platform = platform
        self.attempts = attempts
        self.deadlines = Deadlines.from_env()
        self._clients: dict[str, RegistryClient] = {}

    def client(self, registry: str) -> RegistryClient:
        if registry not in self._clients:
            self._clients[registry] = RegistryClient(registry, self.attempts, self.deadlines)
        return self._clients[registry]

    def tags(self, repository: str) -> list[str]:
        registry, name = split_repository(repository)
        return self.client(registry).tags(name)

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        registry, name = split_repository(ref.repository)
        client = self.client(registry)
        top = client.manifest(name, ref.digest or ref.tag or "latest")
        manifest = top
        if is_index(top.body, top.media_type):
            chosen = choose_platform(top.body, self.platform, str(ref))
            manifest = client.manifest(name, digests.checked(chosen, f"image {ref}: manifest"))
        config, blobs = image_parts(manifest.body, f"registry {registry}: image {ref}")
        config_digest = config.digest
        config_bytes = self.cache.content(config_digest.removeprefix("sha256:"))
        if config_bytes is None:  # content-addressed: once fetched, never again
            config_bytes = client.config(name, config_digest)
        parsed = read_config(config_bytes, config_digest, str(ref))
        self.cache.put_content(config_bytes)
        layers = [
            LayerBlob(
                b.digest,
                b.size,
                b.media_type,
                functools.partial(client.blob, name, b.digest, b.size),
            )
            for b in blobs
        ]
        # A partly read layer is trusted only as what this repository of this registry
        # served for this verified manifest (which pins every layer digest): its records
        # are cached under exactly that.
        scope = f"registry {registry} {name} {top.digest}"
        return self.register(ref, config_digest, top.digest, parsed, layers, scope)
