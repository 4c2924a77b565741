"""The ``s3`` store: one object per image in a bucket of an S3 endpoint (Ceph's RADOS gateway,
or any S3), named by the image id, as Glance's s3 store.

An upload is buffered up to one part (``s3_store_part_size``, 8 MiB); an image smaller than
that is one ``PUT`` at commit, a larger one a multipart upload whose parts go out as they fill,
at most ``s3_store_upload_concurrency`` at once: memory holds those parts and the one filling,
never the image. A part is the list of the pieces written (the image service's 4 MiB
batches), sent one after the other, never joined into one buffer: each copy of the data
would cost about a third of its MD5's CPU. A signed part is hashed (SigV4's sha256) in a
worker thread; to a loopback gateway or over HTTPS parts go as ``UNSIGNED-PAYLOAD``
(``signs_payload_by_default``): the sha256 would cost the upload ~0.6 CPU s per GiB here
and the gateway as much again to check it, where nothing on the way could alter the body.
``commit`` completes the upload (an object is invisible until then: S3's atomic publish),
``abort`` aborts it; ``start`` creates the bucket when missing and aborts
multipart uploads older than ``stale_upload_seconds``, left by a crash. Downloads are one
``GET`` (``Range`` for a part) streamed through.

The location is ``s3://<bucket>/<image id>``: unlike Glance's ``s3+http://KEY:SECRET@host/…``
it carries no credentials (the store has them from its settings). Requests are signed with AWS
Signature Version 4 (``_sign``); the keys appear in no URL, location, log line or error: an
S3 error is reported by its code only, since some servers echo the access key in the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import logging
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from stratus.core.exceptions import ServiceUnavailable
from stratus.image.stores.base import (
    READ_CHUNK,
    ObjectMissing,
    ObjectReader,
    Store,
    StoreFull,
    StoreWriter,
    UnitBuffer,
)

LOG = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: SigV4's ``x-amz-content-sha256`` for a body left out of the signature.
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: S3 refuses parts under 5 MiB (but the last).
MIN_PART = 5 << 20
#: Hashing a part off the event loop pays from this size on (hashlib drops the GIL).
HASH_IN_THREAD = 1 << 20
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
#: The first pause before retrying the abort of an upload the storage did not answer for,
#: doubled each round up to ``ABORT_RETRY_MAX``.
ABORT_RETRY_SECONDS = 1.0
ABORT_RETRY_MAX = 60.0

Params = Sequence[tuple[str, str]]
#: Headers signed besides ``host`` and ``x-amz-*``.
SIGNED = frozenset({"content-md5", "content-type", "range"})


class StoreUnavailable(ServiceUnavailable):
    """The object storage did not answer, or answered with a server error."""


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _sign(method: str, host: str, path: str, params: Params, headers: dict[str, str],
          payload_sha256: str, access_key: str, secret_key: str, region: str,
          now: datetime.datetime) -> None:
    """Add AWS Signature Version 4 headers (``Authorization``, ``x-amz-date``,
    ``x-amz-content-sha256``) to ``headers`` for a request to ``path`` (already
    percent-encoded) with query ``params``; ``host``, ``x-amz-*`` and ``SIGNED`` headers are
    signed."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers["x-amz-date"] = stamp
    headers["x-amz-content-sha256"] = payload_sha256
    signed = {"host": host.strip()}
    signed.update({k.lower(): " ".join(v.split()) for k, v in headers.items()
                   if k.lower().startswith("x-amz-") or k.lower() in SIGNED})
    names = sorted(signed)
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params))
    canonical = "\n".join([
        method, path, query, *(f"{name}:{signed[name]}" for name in names), "",
        ";".join(names), payload_sha256])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"),
                "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")


def signs_payload_by_default(endpoint: str) -> bool:
    """Whether requests to ``endpoint`` should sign their bodies (SigV4's sha256 of each):
    not over HTTPS (TLS protects the body already: what AWS's own clients do) nor to a
    loopback address (no network in between to alter it); over any other plain HTTP, yes.
    The hash is a third of an upload's hashing, in the gateway as much as here."""
    url = httpx.URL(endpoint)
    if url.scheme == "https":
        return False
    host = url.host
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _error_code(response: httpx.Response) -> str:
    """The S3 error's ``Code`` (never its message: servers may echo the key in it)."""
    with contextlib.suppress(ET.ParseError, ValueError):
        if response.content:
            root = ET.fromstring(response.content)
            code = root.findtext("Code") or root.findtext(f"{_NS}Code")
            if code:
                return code
    return f"HTTP {response.status_code}"


def _sha256_of(pieces: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


async def _sha256(pieces: Sequence[bytes]) -> str:
    if sum(len(piece) for piece in pieces) >= HASH_IN_THREAD:
        return await asyncio.to_thread(_sha256_of, pieces)
    return _sha256_of(pieces)


class _Once:
    """A request body of ``pieces``, each sent as it is (never joined: a join would copy
    the whole part) and let go once handed over: httpx's requests and responses reference
    each other, so a part kept by the request would stay in memory until the cyclic
    collector ran (10 parts of a 100 MiB upload, measured)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces, self._pieces = self._pieces, []
        pieces.reverse()
        while pieces:
            yield pieces.pop()


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def s3_location(location: str) -> S3Location | None:
    if not location.startswith("s3://"):
        return None
    bucket, _, key = location[len("s3://"):].partition("/")
    if not bucket or not key or "@" in bucket:
        return None
    return S3Location(bucket, key)


class S3Client:
    """Signed requests to one endpoint, path-style (``/bucket/key``): what the store needs.
    ``sign_payload`` (default: ``signs_payload_by_default``) False sends bodies as
    ``UNSIGNED-PAYLOAD``: the headers are signed, the body's sha256 is not computed."""

    def __init__(self, endpoint: str, access_key: SecretStr, secret_key: SecretStr,
                 region: str = "us-east-1", *, timeout: float = 60,
                 connections: int = 8, sign_payload: bool | None = None) -> None:
        url = httpx.URL(endpoint)
        if url.userinfo:
            raise ValueError("the S3 endpoint must not carry credentials; set the access and "
                             "secret keys")
        self.base = url.copy_with(path="", query=None, fragment=None)
        self.host = url.netloc.decode("ascii")
        self.endpoint = str(self.base).rstrip("/")
        self._access = access_key
        self._secret = secret_key
        self.region = region
        self.sign_payload = (signs_payload_by_default(endpoint) if sign_payload is None
                             else sign_payload)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10)), trust_env=False,
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections))

    async def aclose(self) -> None:
        await self.http.aclose()

    def build(self, method: str, bucket: str, key: str = "", params: Params = (),
              body: bytes | list[bytes] = b"", payload_sha256: str | None = None,
              headers: dict[str, str] | None = None) -> httpx.Request:
        """The signed request; ``body`` may be a list of pieces (a part: sent one after
        the other, never joined)."""
        path = "/" + _quote(bucket) + ("/" + urllib.parse.quote(key, safe="-_.~/")
                                       if key else "")
        headers = dict(headers or {})
        pieces = [body] if isinstance(body, bytes) else body
        length = sum(len(piece) for piece in pieces)
        if payload_sha256 is None:
            payload_sha256 = (EMPTY_SHA256 if not length else _sha256_of(pieces)
                              if self.sign_payload else UNSIGNED_PAYLOAD)
        _sign(method, self.host, path, params, headers, payload_sha256,
              self._access.get_secret_value(), self._secret.get_secret_value(), self.region,
              datetime.datetime.now(datetime.UTC))
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)
        url = self.base.copy_with(raw_path=(path + ("?" + query if query else "")).encode())
        if not length:
            return self.http.build_request(method, url, headers=headers)
        headers["Content-Length"] = str(length)
        return self.http.build_request(method, url, headers=headers,
                                       content=_Once([p for p in pieces if p]))

    async def send(self, request: httpx.Request, *, stream: bool = False,
                   what: str = "request") -> httpx.Response:
        try:
            return await self.http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise StoreUnavailable(
                f"The image store's object storage at {self.endpoint} did not answer "
                f"({what}: {type(exc).__name__}).") from None

    async def call(self, method: str, bucket: str, key: str = "", params: Params = (),
                   body: bytes | list[bytes] = b"", *, what: str,
                   ok: tuple[int, ...] = (200,),
                   headers: dict[str, str] | None = None) -> httpx.Response:
        """One request; an answer outside ``ok`` raises (404 ``ObjectMissing``, no room
        ``StoreFull``, else ``StoreUnavailable``), naming the S3 error code only."""
        pieces = [body] if isinstance(body, bytes) else body
        payload = (EMPTY_SHA256 if not any(pieces) else await _sha256(pieces)
                   if self.sign_payload else UNSIGNED_PAYLOAD)
        response = await self.send(self.build(method, bucket, key, params, body, payload,
                                              headers), what=what)
        if response.status_code not in ok:
            raise self.failure(response, what)
        return response

    def failure(self, response: httpx.Response, what: str) -> Exception:
        code = _error_code(response)
        message = (f"The image store's object storage at {self.endpoint} refused the {what}: "
                   f"{code}.")
        if response.status_code == 404 and code in ("NoSuchKey", "HTTP 404"):
            return ObjectMissing(message)  # (NoSuchBucket, NoSuchUpload: the store's fault)
        if code in ("QuotaExceeded", "EntityTooLarge", "InsufficientCapacity") or (
                response.status_code == 507):
            return StoreFull("Image storage media is full.")
        return StoreUnavailable(message)


class S3Writer(StoreWriter):
    def __init__(self, store: S3Store, image_id: str) -> None:
        self.store = store
        self.key = image_id
        #: The part being filled: the pieces written, never joined (see ``UnitBuffer``).
        self._filling_part = UnitBuffer(store.part_size)
        self._upload_id: str | None = None
        self._etags: dict[int, str] = {}
        self._parts = 0
        self._size = 0
        self._pending: set[asyncio.Future[None]] = set()
        self._committed = False
        self._done = False

    @property
    def client(self) -> S3Client:
        return self.store.client

    async def _begin(self) -> None:
        response = await self.client.call("POST", self.store.bucket, self.key,
                                          [("uploads", "")], what="multipart upload start")
        upload_id = ET.fromstring(response.content).findtext(f"{_NS}UploadId") or ""
        if not upload_id:
            raise StoreUnavailable("The image store's object storage answered no upload id.")
        self._upload_id = upload_id

    async def _put_part(self, number: int, data: list[bytes]) -> None:
        assert self._upload_id is not None
        response = await self.client.call(
            "PUT", self.store.bucket, self.key,
            [("partNumber", str(number)), ("uploadId", self._upload_id)], data,
            what=f"part {number}")
        self._etags[number] = response.headers.get("etag", "")

    async def _drain(self, depth: int = 0) -> None:
        """Wait until at most ``depth`` parts are under way; the first failure is raised."""
        while len(self._pending) > depth:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                self._pending.discard(future)
                future.result()

    async def _send(self, data: list[bytes]) -> None:
        if self._upload_id is None:
            await self._begin()
        await self._drain(self.store.concurrency - 1)
        self._parts += 1
        self._pending.add(asyncio.ensure_future(self._put_part(self._parts, data)))

    async def write(self, data: bytes) -> None:
        if self._done:
            return
        # A part is the list of the pieces written, sent one after the other; the image
        # service's 4 MiB batches fill the default 8 MiB parts exactly.
        self._size += len(data)
        for part in self._filling_part.add(data):
            await self._send(part)

    async def write_chunks(self, chunks: Sequence[bytes]) -> None:
        # The chunks as received become the part's pieces: no join (see ``write``).
        for chunk in chunks:
            await self.write(chunk)

    async def commit(self) -> str:
        client, bucket = self.client, self.store.bucket
        if self._upload_id is None:  # smaller than a part: one PUT
            await client.call("PUT", bucket, self.key, body=self._filling_part.take(),
                              what="upload")
            parts = 1
        else:
            if self._filling_part.buffered:
                await self._send(self._filling_part.take())
            await self._drain()
            parts = self._parts
            listing = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{self._etags[n]}"
                              "</ETag></Part>" for n in range(1, parts + 1))
            body = (f"<CompleteMultipartUpload>{listing}</CompleteMultipartUpload>").encode()
            response = await client.call("POST", bucket, self.key,
                                         [("uploadId", self._upload_id)], body,
                                         what="multipart upload completion")
            # S3 may answer 200 and report the failure in the body.
            if b"<Error>" in response.content[:512]:
                raise client.failure(response, "multipart upload completion")
        self._committed = True
        self._done = True
        self.store.parts_uploaded += parts
        LOG.info("stored image %s in %s/%s: %d bytes in %d part(s)", self.key, bucket,
                 self.key, self._size, parts)
        return str(S3Location(bucket, self.key))

    async def abort(self) -> None:
        self._done = True
        self._filling_part.take()
        pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._upload_id is not None and not self._committed:
            upload_id, self._upload_id = self._upload_id, None
            try:
                await self.store.abort_upload(self.key, upload_id)
            except StoreUnavailable:
                # The storage went away mid-upload (the usual reason for this abort): its
                # parts stay until it answers again; the store retries meanwhile.
                self.store.abort_later(self.key, upload_id)
        if self._committed:
            await self.store.delete(str(S3Location(self.store.bucket, self.key)))


class S3Reader(ObjectReader):
    def __init__(self, response: httpx.Response | None, size: int, length: int,
                 chunk_size: int) -> None:
        self._response = response
        self.size = size
        self.length = length
        self.chunk_size = chunk_size

    async def chunks(self) -> AsyncIterator[bytes]:
        remaining = self.length
        try:
            if self._response is not None and remaining:
                try:
                    async for data in self._response.aiter_raw(self.chunk_size):
                        remaining -= len(data)
                        yield data
                except httpx.TransportError as exc:
                    if self._response is None:
                        return  # closed meanwhile
                    raise OSError(f"the object storage stopped sending "
                                  f"({type(exc).__name__})") from None
                if remaining > 0 and self._response is not None:
                    raise OSError(f"object ended {remaining} bytes early")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()


class S3Store(Store):
    scheme = "s3"

    def __init__(self, endpoint: str, access_key: SecretStr, secret_key: SecretStr, *,
                 bucket: str = "images", region: str = "us-east-1", part_size: int = 8 << 20,
                 concurrency: int = 2, stale_upload_seconds: float = 3600,
                 timeout: float = 60, sign_payload: bool | None = None) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.part_size = max(part_size, MIN_PART)
        self.concurrency = max(1, concurrency)
        self.stale_upload_seconds = stale_upload_seconds
        self.client = S3Client(endpoint, access_key, secret_key, region, timeout=timeout,
                               connections=max(4, 2 * self.concurrency),
                               sign_payload=sign_payload)
        #: Parts of the uploads this store committed (a single PUT counts one).
        self.parts_uploaded = 0
        #: Multipart uploads whose abort failed (the storage did not answer): (key, upload
        #: id), aborted by ``_retry_aborts`` once it answers again.
        self._unaborted: set[tuple[str, str]] = set()
        self._retrying: asyncio.Task[None] | None = None
        self.abort_retry_seconds = ABORT_RETRY_SECONDS

    async def start(self) -> None:
        response = await self.client.call("HEAD", self.bucket, what="bucket check",
                                          ok=(200, 404))
        if response.status_code == 404:
            await self.client.call("PUT", self.bucket, what="bucket creation", ok=(200,))
            LOG.info("created bucket %s at %s", self.bucket, self.client.endpoint)
        aborted = await self.abort_stale(self.stale_upload_seconds)
        if aborted:
            LOG.info("aborted %d multipart upload(s) left over from an earlier run", aborted)

    async def stop(self) -> None:
        retrying, self._retrying = self._retrying, None
        if retrying is not None:
            retrying.cancel()
            with contextlib.suppress(BaseException):
                await retrying
        if self._unaborted:  # a later start's sweep aborts them once stale
            LOG.warning("%d multipart upload(s) in %s could not be aborted yet",
                        len(self._unaborted), self.bucket)
        await self.client.aclose()

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self.client.call("DELETE", self.bucket, key, [("uploadId", upload_id)],
                               what="upload abort", ok=(200, 204, 404))

    def abort_later(self, key: str, upload_id: str) -> None:
        """Abort the multipart upload of ``key`` as soon as the storage answers again
        (retried with a growing pause, up to ``ABORT_RETRY_MAX`` seconds), so an upload cut
        by an outage leaves no parts behind, without a restart."""
        LOG.warning("could not abort the multipart upload of %s/%s: the object storage did "
                    "not answer; retrying until it does", self.bucket, key)
        self._unaborted.add((key, upload_id))
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry_aborts())

    async def _retry_aborts(self) -> None:
        pause = self.abort_retry_seconds
        while self._unaborted:
            await asyncio.sleep(pause)
            pause = min(pause * 2, ABORT_RETRY_MAX)
            for key, upload_id in sorted(self._unaborted):
                try:
                    await self.abort_upload(key, upload_id)
                except StoreUnavailable:
                    break  # still away: all wait for the next round
                except Exception:
                    LOG.exception("could not abort the multipart upload of %s/%s",
                                  self.bucket, key)
                else:
                    LOG.info("aborted the multipart upload of %s/%s left by an outage",
                             self.bucket, key)
                self._unaborted.discard((key, upload_id))

    async def abort_stale(self, older_than: float) -> int:
        """Abort the bucket's multipart uploads begun ``older_than`` seconds ago or more."""
        cutoff = time.time() - older_than
        stale: list[tuple[str, str]] = []
        params: list[tuple[str, str]] = [("uploads", "")]
        while True:
            response = await self.client.call("GET", self.bucket, params=params,
                                              what="multipart upload listing")
            root = ET.fromstring(response.content)
            for upload in root.iter(f"{_NS}Upload"):
                key = upload.findtext(f"{_NS}Key") or ""
                upload_id = upload.findtext(f"{_NS}UploadId") or ""
                initiated = upload.findtext(f"{_NS}Initiated") or ""
                try:
                    began = datetime.datetime.fromisoformat(
                        initiated.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
                if key and upload_id and began <= cutoff:
                    stale.append((key, upload_id))
            if root.findtext(f"{_NS}IsTruncated") != "true":
                break
            params = [("uploads", ""),
                      ("key-marker", root.findtext(f"{_NS}NextKeyMarker") or ""),
                      ("upload-id-marker", root.findtext(f"{_NS}NextUploadIdMarker") or "")]
        for key, upload_id in stale:
            await self.abort_upload(key, upload_id)
        return len(stale)

    def _location(self, location: str) -> S3Location:
        parsed = s3_location(location)
        if parsed is None:
            raise ObjectMissing(f"Location {location!r} is not an s3://bucket/key.")
        return parsed

    async def writer(self, image_id: str) -> StoreWriter:
        return S3Writer(self, image_id)

    async def open(self, location: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = READ_CHUNK) -> ObjectReader:
        parsed = self._location(location)
        if length == 0:
            head = await self.client.call("HEAD", parsed.bucket, parsed.key,
                                          what="object check")
            return S3Reader(None, int(head.headers.get("content-length", 0)), 0, chunk_size)
        headers = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
        request = self.client.build("GET", parsed.bucket, parsed.key, headers=headers)
        response = await self.client.send(request, stream=True, what="download")
        if response.status_code not in (200, 206):
            await response.aread()
            await response.aclose()
            if response.status_code == 416:  # a range past the end of an empty object
                return S3Reader(None, 0, 0, chunk_size)
            raise self.client.failure(response, "download")
        if response.status_code == 206:
            size = int(response.headers.get("content-range", "/0").rpartition("/")[2])
        else:
            if offset:  # a server that ignored the range would send the wrong bytes
                await response.aclose()
                raise StoreUnavailable(f"The image store's object storage at "
                                       f"{self.client.endpoint} ignored a Range request.")
            size = int(response.headers.get("content-length", 0))
        sent = int(response.headers.get("content-length", 0))
        return S3Reader(response, size, sent if length is None else min(length, sent),
                        chunk_size)

    async def delete(self, location: str) -> None:
        parsed = self._location(location)
        await self.client.call("DELETE", parsed.bucket, parsed.key, what="delete",
                               ok=(200, 204, 404))

    async def exists(self, location: str) -> bool:
        parsed = self._location(location)
        response = await self.client.call("HEAD", parsed.bucket, parsed.key,
                                          what="object check", ok=(200, 404))
        return response.status_code == 200
