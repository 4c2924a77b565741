"""``/v2/images/{id}/file``: streaming upload and download of image data.

Neither direction holds the body in memory: the upload is fed chunk by chunk to the store (the
app's JSON body-size limit does not apply to this route), the download is read from the store
chunk by chunk. Downloads carry ``Content-MD5`` (the image's checksum, as Glance sends it) and
answer single ``Range`` requests with ``206``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import re
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from stratus.core.exceptions import BadRequest, UnsupportedMediaType
from stratus.core.metrics import IMAGE_BYTES, counting
from stratus.core.web import openapi
from stratus.core.web.socket_body import SENDFILE, take_from
from stratus.image.api.deps import CallerDep, Runtime
from stratus.image.api.images import json_body
from stratus.image.data import ByteRange
from stratus.image.errors import RangeNotSatisfiable
from stratus.image.stores import ObjectReader

LOG = logging.getLogger(__name__)

router = APIRouter(prefix="/v2")

UPLOAD_PATH_SUFFIX = "/file"
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None) -> ByteRange | None:
    """One ``bytes=`` range; None when absent or not understood (the whole data is sent)."""
    if not header:
        return None
    match = _RANGE_RE.match(header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first = int(match.group(1)) if match.group(1) else None
    last = int(match.group(2)) if match.group(2) else None
    if first is not None and last is not None and last < first:
        return None
    return ByteRange(first, last)


@router.put("/images/{image_id}/file", status_code=204)
async def upload(image_id: str, request: Request, runtime: Runtime,
                 caller: CallerDep) -> Response:
    media_type = request.headers.get("content-type", "application/octet-stream")
    if media_type.split(";")[0].strip().lower() != "application/octet-stream":
        raise UnsupportedMediaType(f"Unsupported Content-Type {media_type!r} for image data; "
                                   "use application/octet-stream.")
    declared: int | None = None
    if "chunked" not in request.headers.get("transfer-encoding", "").lower():
        length = request.headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
    try:
        await runtime.data.upload(caller, image_id, request.stream(), declared,
                                  functools.partial(take_from, request.scope))
    except ClientDisconnect:
        LOG.info("client went away while uploading image %s; upload discarded", image_id)
        return Response(status_code=400)
    return Response(status_code=204)


_LOCATION_BODY = openapi.request_body({
    "type": "object", "required": ["url"], "additionalProperties": False, "properties": {
        "url": {"type": "string", "maxLength": 2048},
        "validation_data": {"type": "object", "additionalProperties": False,
                            "required": ["os_hash_algo", "os_hash_value"], "properties": {
                                "os_hash_algo": {"type": "string"},
                                "os_hash_value": {"type": "string"}}}}})


def _location_request(body: Any) -> tuple[str, tuple[str, str] | None]:
    """(url, validation) of an add-location body, Glance's 400 for anything else."""
    if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not body["url"]:
        raise BadRequest("The request body must be an object with a non-empty 'url'.")
    unknown = set(body) - {"url", "validation_data"}
    if unknown:
        raise BadRequest(f"Unknown attribute(s) {', '.join(sorted(unknown))}.")
    validation = body.get("validation_data")
    if validation is None:
        return body["url"], None
    if (not isinstance(validation, dict) or set(validation) != {"os_hash_algo", "os_hash_value"}
            or not all(isinstance(v, str) and v for v in validation.values())):
        raise BadRequest("validation_data must have os_hash_algo and os_hash_value, and "
                         "nothing else.")
    return body["url"], (validation["os_hash_algo"], validation["os_hash_value"])


@router.post("/images/{image_id}/locations", status_code=202, openapi_extra=_LOCATION_BODY)
async def add_location(image_id: str, request: Request, runtime: Runtime,
                       caller: CallerDep) -> Response:
    """Glance 2.17's add location, for data the store already holds (compute's RBD
    snapshot of a guest)."""
    url, validation = _location_request(await json_body(request))
    await runtime.data.add_location(caller, image_id, url, validation)
    return Response(status_code=202)


DOWNLOADED = IMAGE_BYTES.labels("downloaded")


#: Bytes per ``os.sendfile`` of a download.
SEND_PIECE = 8 * 1024 * 1024
#: Pieces asked of the disk ahead of the one being sent (``POSIX_FADV_WILLNEED``): sendfile
#: waits for each page it finds still on the disk, and the kernel's own readahead is smaller.
#: Six ahead read no faster than two here (``benchmarks/profiles/image-2026-12-07b.md``).
AHEAD_PIECES = 2
#: Pieces kept in the page cache behind the one being sent before they are dropped
#: (``POSIX_FADV_DONTNEED``): the kernel skips a page still referenced by a socket buffer,
#: so a margin behind the piece under way saves it looking at pages it cannot drop yet.
BEHIND_PIECES = 2


def _advise(fd: int, ahead: tuple[int, int] | None, behind: tuple[int, int] | None) -> None:
    """Ask the disk for ``ahead`` (offset, length) and drop ``behind`` from the page cache:
    image data is kept out of the cache (the file store writes it with ``O_DIRECT``), so a
    download uses a window of it, not the whole image until it ends."""
    with contextlib.suppress(OSError):
        if ahead is not None and ahead[1] > 0:
            os.posix_fadvise(fd, ahead[0], ahead[1], os.POSIX_FADV_WILLNEED)
        if behind is not None and behind[1] > 0:
            os.posix_fadvise(fd, behind[0], behind[1], os.POSIX_FADV_DONTNEED)


class _SentFile(Response):
    """The image's data sent with ``os.sendfile`` where the server offers it and the store
    has a local file (``stratus.core.web.socket_body.SENDFILE``): the kernel copies it from
    the page cache to the socket, none of it passing through Python (streamed in chunks,
    each was read into a buffer, copied into ``bytes`` and written by the event loop:
    ``benchmarks/profiles/image-2026-12-07.md``). Should the server not send it (a middleware
    holding the response's head), it is streamed from the file after all."""

    def __init__(self, reader: ObjectReader, sendfile: Any, where: tuple[int, int, int],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reader = reader
        self.sendfile = sendfile
        self.where = where

    async def _send_pieces(self, file: io.FileIO, fd: int, offset: int, length: int) -> bool:
        """Send the range ``SEND_PIECE`` bytes at a time, the disk asked for the next
        ``AHEAD_PIECES`` pieces before the current one is sent and the pieces sent
        ``BEHIND_PIECES`` before it dropped from the page cache (one worker-thread call per
        piece for both)."""
        start, end = offset, offset + length
        window = AHEAD_PIECES * SEND_PIECE
        asked = min(start + window, end)  # asked of the disk up to here
        dropped = start  # dropped from the page cache up to here
        await asyncio.to_thread(_advise, fd, (start, asked - start), None)
        while offset < end:
            count = min(SEND_PIECE, end - offset)
            ahead = None
            if asked < end:
                until = min(offset + count + window, end)
                ahead, asked = (asked, until - asked), until
            behind = None
            if offset - BEHIND_PIECES * SEND_PIECE > dropped:
                until = offset - BEHIND_PIECES * SEND_PIECE
                behind, dropped = (dropped, until - dropped), until
            if ahead is not None or behind is not None:
                await asyncio.to_thread(_advise, fd, ahead, behind)
            if not await self.sendfile(file, offset, count):
                if offset == start:
                    return False  # nothing sent: the caller streams it all
                raise RuntimeError("sendfile refused the rest of a response")
            DOWNLOADED.inc(count)
            offset += count
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            fd, offset, length = self.where
            with io.FileIO(fd, "rb", closefd=False) as file:  # the reader's descriptor
                sent = await self._send_pieces(file, fd, offset, length)
            if not sent:
                async for chunk in counting(self.reader.chunks(), DOWNLOADED):
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.reader.aclose()


@router.get("/images/{image_id}/file")
async def download(image_id: str, request: Request, runtime: Runtime,
                   caller: CallerDep) -> Response:
    try:
        data = await runtime.data.open_data(caller, image_id,
                                            parse_range(request.headers.get("range")))
    except RangeNotSatisfiable as exc:
        style = request.app.state.error_style
        return style.response(416, exc.message, title=exc.title,
                              headers={"Content-Range": f"bytes */{exc.size}"})
    if data is None:
        return Response(status_code=204)
    headers = {"Content-Length": str(data.length), "Accept-Ranges": "bytes"}
    status = 200
    if data.partial:
        status = 206
        headers["Content-Range"] = (f"bytes {data.offset}-{data.offset + data.length - 1}"
                                    f"/{data.size}")
    elif data.checksum:
        headers["Content-MD5"] = data.checksum
    sendfile = request.scope.get("extensions", {}).get(SENDFILE, {}).get("send")
    if sendfile is not None and (where := await data.reader.sendfile_range()) is not None:
        return _SentFile(data.reader, sendfile, where, status_code=status, headers=headers,
                         media_type="application/octet-stream")
    return StreamingResponse(counting(data.reader.chunks(), DOWNLOADED), status_code=status,
                             headers=headers, media_type="application/octet-stream",
                             background=BackgroundTask(data.reader.aclose))
