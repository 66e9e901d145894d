"""Image source that talks to an OCI registry directly: no daemon, fewest bytes.

A small client on httpx (HTTP) and tenacity (retries) for the handful of
Distribution-spec calls patchkeeper needs: tags (paginated), manifests (digest
checked, indexes resolved to one platform), the config blob, and layer blobs as
streams that the layer reader can abandon early. Auth follows the registry's
`WWW-Authenticate` challenge (Bearer token flow as Docker Hub and GHCR use it,
or Basic); credentials come from the environment or Docker's own config and
credential helpers (docker SDK), and never appear in messages.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker.auth
import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from patchkeeper.errors import ImageError, UnreachableError, register_secret
from patchkeeper.image.layers import LayerBlob, LayeredSource, read_config
from patchkeeper.image.manifests import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    choose_platform,
    image_parts,
    is_index,
    parse_json,
)
from patchkeeper.image.model import ImageRef, ResolvedImage

log = logging.getLogger(__name__)

DOCKER_HUB = "registry-1.docker.io"
ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
RETRY_STATUS = {429, 500, 502, 503, 504}
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_NEXT = re.compile(r'<([^>]+)>;\s*rel="?next"?')


def split_repository(repository: str) -> tuple[str, str]:
    """`lmsysorg/sglang` -> (registry-1.docker.io, lmsysorg/sglang), as docker resolves names."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    if first == "docker.io":
        repository = rest
    return DOCKER_HUB, repository if "/" in repository else f"library/{repository}"


def _insecure(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0]
    listed = {r.strip() for r in os.environ.get("PATCHKEEPER_INSECURE_REGISTRIES", "").split(",")}
    return host in ("127.0.0.1", "localhost", "[::1]") or registry in listed


def credentials(registry: str) -> tuple[str, str] | None:
    """From PATCHKEEPER_REGISTRY_USERNAME/PASSWORD, else Docker's config and helpers."""
    user = os.environ.get("PATCHKEEPER_REGISTRY_USERNAME")
    secret = os.environ.get("PATCHKEEPER_REGISTRY_PASSWORD")
    if user and secret:
        log.info("registry %s: credentials from PATCHKEEPER_REGISTRY_USERNAME/PASSWORD", registry)
        return user, secret
    try:
        config = docker.auth.load_config()
        found = docker.auth.resolve_authconfig(config, None if registry == DOCKER_HUB else registry)
    except Exception:  # a broken credential helper must not leak or crash: go anonymous
        return None
    if found and found.get("username") and found.get("password"):
        register_secret(str(found["password"]))  # never echoed, even by an error message
        log.info("registry %s: credentials from Docker's config", registry)
        return str(found["username"]), str(found["password"])
    log.info("registry %s: no credentials; anonymous", registry)
    return None


def _retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, _Retry)


class _Retry(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _wait(state: Any) -> float:
    """Honour Retry-After when the registry sends one, else exponential backoff."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _Retry):
        after = error.response.headers.get("Retry-After", "")
        if after.isdigit():
            return min(float(after), 60.0)
    return float((wait_exponential(multiplier=0.5, max=20) + wait_random(0, 0.5))(state))


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: dict[str, Any]


class RegistryClient:
    """The Distribution-spec calls patchkeeper needs, for one registry."""

    def __init__(self, registry: str, attempts: int = 5) -> None:
        self.registry = registry
        scheme = "http" if _insecure(registry) else "https"
        self.http = httpx.Client(
            base_url=f"{scheme}://{registry}",
            timeout=httpx.Timeout(30.0, read=120.0),
            follow_redirects=True,
            headers={"User-Agent": "patchkeeper"},
        )
        self._credentials = credentials(registry)
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        self.attempts = attempts
        self.page_size = 1000
        self.requests = 0

    def _raw(self, method: str, url: str, scope: str, headers: dict[str, str]) -> httpx.Response:
        """One request (retried on 429/5xx and transport errors), streamed, not yet read."""
        for attempt in Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.attempts),
            wait=_wait,
            reraise=True,
        ):
            with attempt:
                sent = {
                    **headers,
                    **({"Authorization": self._auth[scope]} if scope in self._auth else {}),
                }
                self.requests += 1
                response = self.http.send(
                    self.http.build_request(method, url, headers=sent), stream=True
                )
                log.info("%s %s%s -> %d", method, self.registry, url, response.status_code)
                if response.status_code in RETRY_STATUS:
                    response.close()
                    raise _Retry(response)
                return response
        raise AssertionError("unreachable")

    def request(
        self, method: str, url: str, scope: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """A request with auth challenges answered; the caller reads or closes the response."""
        headers = headers or {}
        try:
            response = self._raw(method, url, scope, headers)
            if response.status_code == 401:  # no token yet, or it expired: answer once
                challenge = response.headers.get("WWW-Authenticate", "")
                response.close()
                self._auth[scope] = self._authorize(challenge, scope)
                response = self._raw(method, url, scope, headers)
        except _Retry as err:
            raise UnreachableError(
                f"registry {self.registry}: {method} {url} kept failing "
                f"(HTTP {err.response.status_code}) after {self.attempts} attempts"
            ) from None
        except httpx.HTTPError as err:
            raise UnreachableError(f"registry {self.registry} unreachable: {err}") from None
        if response.status_code >= 400:
            response.close()
            what = {401: "unauthorized (check credentials)", 403: "forbidden", 404: "not found"}
            reason = what.get(response.status_code, f"HTTP {response.status_code}")
            raise ImageError(f"registry {self.registry}: {url}: {reason}")
        return response

    def _authorize(self, challenge: str, scope: str) -> str:
        if not challenge.strip():
            raise ImageError(
                f"registry {self.registry}: 401 unauthorized with no WWW-Authenticate "
                "challenge to answer (a proxy in the way, or credentials it does not take)"
            )
        scheme = challenge.split(" ", 1)[0].lower()
        log.info("registry %s: %s auth for %s", self.registry, scheme, scope)
        if scheme == "basic":
            if not self._credentials:
                raise ImageError(f"registry {self.registry} needs credentials (basic auth)")
            user, secret = self._credentials
            return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
        params = dict(_CHALLENGE.findall(challenge))
        if scheme != "bearer" or "realm" not in params:
            raise ImageError(f"registry {self.registry}: unsupported auth challenge {scheme!r}")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        auth = httpx.BasicAuth(*self._credentials) if self._credentials else None
        try:
            self.requests += 1
            reply = httpx.get(params["realm"], params=query, auth=auth, timeout=30.0)
        except httpx.HTTPError as err:
            raise UnreachableError(f"token service of {self.registry} unreachable: {err}") from None
        if reply.status_code != 200:
            raise ImageError(
                f"registry {self.registry}: token refused for {scope} (HTTP {reply.status_code})"
            )
        body = reply.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise ImageError(f"registry {self.registry}: token service sent no token")
        return f"Bearer {token}"

    def tags(self, repository: str) -> list[str]:
        scope = f"repository:{repository}:pull"
        url: str | None = f"/v2/{repository}/tags/list?n={self.page_size}"
        found: list[str] = []
        while url:
            response = self.request("GET", url, scope)
            try:
                response.read()
                found += response.json().get("tags") or []
                link = _NEXT.search(response.headers.get("Link", ""))
            finally:
                response.close()
            url = link.group(1) if link else None
        return found

    def manifest(self, repository: str, reference: str) -> Manifest:
        scope = f"repository:{repository}:pull"
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", scope, {"Accept": ACCEPT}
        )
        try:
            data = response.read()
        finally:
            response.close()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise ImageError(f"registry {self.registry}: manifest {reference} has digest {digest}")
        body = parse_json(data, f"registry {self.registry}: {repository}@{reference}")
        media_type = body.get("mediaType") or response.headers.get("Content-Type", "")
        return Manifest(digest, media_type.split(";")[0], body)

    @contextlib.contextmanager
    def blob(self, repository: str, digest: str) -> Iterator[io.BufferedReader]:
        """Stream a blob; closing early stops the download."""
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull"
        )
        try:
            yield io.BufferedReader(_ChunkReader(response.iter_raw(1 << 16)))
        finally:
            response.close()


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size


class RegistrySource(LayeredSource):
    """Reads images straight from their registry, layers top-down, stopping early."""

    name = "registry"

    def __init__(self, platform: str = "linux/amd64", progress: Any = None) -> None:
        super().__init__(progress)
        self.platform = platform
        self._clients: dict[str, RegistryClient] = {}

    def client(self, registry: str) -> RegistryClient:
        if registry not in self._clients:
            self._clients[registry] = RegistryClient(registry)
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
            manifest = client.manifest(name, choose_platform(top.body, self.platform, str(ref)))
        config_ref, layer_refs = image_parts(manifest.body, str(ref))
        config_digest = config_ref.digest
        config_bytes = self.cache.content(config_digest.removeprefix("sha256:"))
        log.debug("config %s: %s", config_digest, "cached" if config_bytes else "fetching")
        if config_bytes is None:  # content-addressed: once fetched, never again
            with client.blob(name, config_digest) as stream:
                config_bytes = stream.read()
        config = read_config(config_bytes, config_digest, str(ref))
        self.cache.put_content(config_bytes)
        layers = [
            LayerBlob(
                layer.digest,
                layer.size,
                layer.media_type,
                functools.partial(client.blob, name, layer.digest),
            )
            for layer in layer_refs
        ]
        return self.register(ref, config_digest, top.digest, config, layers)
