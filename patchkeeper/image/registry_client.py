"""The Distribution-spec calls patchkeeper makes, for one registry, on httpx and tenacity.

Tags (paginated), manifests (digest checked), the config blob, and layer blobs as
streams the layer reader can abandon early (`ranged`). Auth answers the registry's
`WWW-Authenticate` challenge (Bearer token flow as Docker Hub and GHCR use it, or
Basic); credentials never reach another host (redirects drop them, a tags `Link` to
another host is refused) nor any message.

Registries are untrusted: manifests, configs, tag pages and token replies are read up
to a size cap and parsed into the shape expected; every request has a deadline (a
stall limit per read, and a limit on the whole request, scaled by size for blobs) and
the client an overall one, so a silent or drip-feeding server fails in minutes.
Pagination that loops is refused. 429 and 5xx are retried, honouring Retry-After.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from patchkeeper.errors import ImageError, UnreachableError, UnsafeInputError, redact
from patchkeeper.image import digests
from patchkeeper.image.manifests import INDEX_TYPES, MANIFEST_TYPES, parse_json
from patchkeeper.image.ranged import RangedReader
from patchkeeper.image.registry_access import Deadlines, credentials, insecure
from patchkeeper.lowspeed import Pace

log = logging.getLogger("patchkeeper.image.registry")

ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
RETRY_STATUS = {429, 500, 502, 503, 504}
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_NEXT = re.compile(r'<([^>]+)>;\s*rel="?next"?')
MAX_MANIFEST_BYTES = 4 << 20  # containerd's limit
MAX_CONFIG_BYTES = 16 << 20
MAX_TAGS_PAGE_BYTES = 16 << 20
MAX_TOKEN_BYTES = 1 << 20
MAX_TAG_PAGES = 1000
MIN_BLOB_RATE = 1 << 20  # bytes/s a blob request may not fall below, on average


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


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_R = TypeVar("_R", bound=_Reply)


class TokenReply(_Reply):
    """A token service's answer (Docker's token spec: `token`, or OAuth's `access_token`)."""

    token: str | None = None
    access_token: str | None = None


class TagList(_Reply):
    """One page of `/v2/<name>/tags/list`."""

    tags: list[str] | None = None


def _reply(model: type[_R], data: bytes, where: str) -> _R:
    """`data` parsed into `model`; a reply of another shape is an ImageError naming `where`
    and the field (never the values: a token reply holds a secret)."""
    try:
        return model.model_validate_json(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "the reply"
        raise ImageError(f"{where}: unexpected reply: {field}: {first['msg']}") from None


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: dict[str, Any]


class RegistryClient:
    """The Distribution-spec calls patchkeeper needs, for one registry."""

    def __init__(
        self, registry: str, attempts: int = 5, deadlines: Deadlines | None = None
    ) -> None:
        self.registry = registry
        scheme = "http" if insecure(registry) else "https"
        self.deadlines = deadlines or Deadlines.from_env()
        self.ends_at = time.monotonic() + self.deadlines.overall
        self.http = httpx.Client(
            base_url=f"{scheme}://{registry}",
            timeout=httpx.Timeout(self.deadlines.stall),
            follow_redirects=True,  # httpx drops Authorization on a cross-origin redirect
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
                self.check_deadline(url, self.ends_at, "the overall deadline")
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

    def paced(self, chunks: Iterator[bytes], url: str, pace: Pace) -> Iterator[bytes]:
        """`chunks` as they arrive, abandoned when they arrive below the low-speed limit."""
        while True:
            started = time.monotonic()
            chunk = next(chunks, None)
            if chunk is None:
                return
            if pace.too_slow(len(chunk), time.monotonic() - started):
                raise UnreachableError(
                    f"registry {self.registry}: {url}: too slow, {pace.reason()}"
                )
            yield chunk

    def check_deadline(self, url: str, ends_at: float, what: str) -> None:
        if time.monotonic() > min(ends_at, self.ends_at):
            limit = "overall deadline" if ends_at >= self.ends_at else what
            raise UnreachableError(
                f"registry {self.registry}: {url}: gave up at the {limit} "
                "(PATCHKEEPER_REGISTRY_TIMEOUT / PATCHKEEPER_REGISTRY_DEADLINE)"
            )

    def body(self, response: httpx.Response, url: str, cap: int, what: str) -> bytes:
        """A whole (small) response body, within its size cap and the request deadline."""
        ends_at = time.monotonic() + self.deadlines.request
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise UnsafeInputError(
                f"registry {self.registry}: {what} of {declared} bytes, over the {cap} limit"
            )
        chunks, size, pace = [], 0, self.deadlines.low_speed.pace()
        try:
            for chunk in self.paced(response.iter_bytes(), url, pace):
                size += len(chunk)
                if size > cap:
                    raise UnsafeInputError(
                        f"registry {self.registry}: {what} over the {cap} byte limit"
                    )
                self.check_deadline(url, ends_at, "request deadline")
                chunks.append(chunk)
        except httpx.HTTPError as err:
            raise UnreachableError(f"registry {self.registry}: {url}: {err}") from None
        finally:
            response.close()
        return b"".join(chunks)

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
        realm = params["realm"]
        auth = httpx.BasicAuth(*self._credentials) if self._credentials else None
        try:
            self.requests += 1
            with httpx.Client(auth=auth, timeout=self.deadlines.stall) as client:
                reply = client.send(httpx.Request("GET", realm, params=query), stream=True)
                if reply.status_code != 200:
                    reply.close()
                    raise ImageError(
                        f"registry {self.registry}: token refused for {scope} "
                        f"(HTTP {reply.status_code})"
                    )
                data = self.body(reply, redact(realm), MAX_TOKEN_BYTES, "token reply")
        except httpx.InvalidURL:
            raise ImageError(
                f"registry {self.registry}: auth challenge realm {redact(realm)!r} is not a URL"
            ) from None
        except httpx.HTTPError as err:
            raise UnreachableError(f"token service of {self.registry} unreachable: {err}") from None
        where = f"registry {self.registry}: token service {redact(realm)}"
        answer = _reply(TokenReply, data, where)
        token = answer.token or answer.access_token
        if not token:
            raise ImageError(f"{where}: sent no token")
        return f"Bearer {token}"

    def tags(self, repository: str) -> list[str]:
        scope = f"repository:{repository}:pull"
        url: str | None = f"/v2/{repository}/tags/list?n={self.page_size}"
        found: list[str] = []
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) >= MAX_TAG_PAGES:
                raise ImageError(
                    f"registry {self.registry}: tag list of {repository} pages in a loop "
                    f"(or past {MAX_TAG_PAGES} pages); refusing"
                )
            seen.add(url)
            response = self.request("GET", url, scope)
            data = self.body(response, url, MAX_TAGS_PAGE_BYTES, "tag list page")
            found += _reply(TagList, data, f"registry {self.registry}: {url}").tags or []
            link = _NEXT.search(response.headers.get("Link", ""))
            url = self._same_origin(response.url.join(link.group(1))) if link else None
        return found

    def _same_origin(self, url: httpx.URL) -> str:
        """A `Link` target as a path on this registry; another host never gets our auth."""
        base = self.http.base_url
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise ImageError(
                f"registry {self.registry}: tag list links to another host {url.host!r}; "
                "refusing to follow (credentials stay with the registry)"
            )
        return url.raw_path.decode("ascii")

    def manifest(self, repository: str, reference: str) -> Manifest:
        scope = f"repository:{repository}:pull"
        url = f"/v2/{repository}/manifests/{reference}"
        response = self.request("GET", url, scope, {"Accept": ACCEPT})
        data = self.body(response, url, MAX_MANIFEST_BYTES, "manifest")
        digest = digests.of(data)
        if reference.startswith("sha256:") and reference != digest:
            raise ImageError(f"registry {self.registry}: manifest {reference} has digest {digest}")
        body = parse_json(data, f"registry {self.registry}: {repository} {reference}")
        media_type = body.get("mediaType") or response.headers.get("Content-Type", "")
        return Manifest(digest, str(media_type).split(";")[0], body)

    @contextlib.contextmanager
    def blob(self, repository: str, digest: str, size: int = 0) -> Iterator[io.BufferedReader]:
        """Stream a blob; closing early stops the download."""
        url = f"/v2/{repository}/blobs/{digest}"
        ends_at = time.monotonic() + self.deadlines.request + size / MIN_BLOB_RATE
        reader = RangedReader(self, url, f"repository:{repository}:pull", size, ends_at)
        try:
            yield io.BufferedReader(reader, 1 << 16)
        finally:
            reader.close()

    def config(self, repository: str, digest: str) -> bytes:
        url = f"/v2/{repository}/blobs/{digest}"
        response = self.request("GET", url, f"repository:{repository}:pull")
        return self.body(response, url, MAX_CONFIG_BYTES, "config blob")
