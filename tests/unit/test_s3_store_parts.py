"""The s3 image store's pieces that need no gateway: SigV4 against AWS's published examples,
locations, and a gateway that does not answer (503, no credential in the error)."""

from __future__ import annotations

import datetime
import socket

import pytest
from pydantic import SecretStr

from stratus.image.stores.s3 import (
    EMPTY_SHA256,
    S3Store,
    StoreUnavailable,
    _sign,
    s3_location,
    signs_payload_by_default,
)

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "examplebucket.s3.amazonaws.com"
WHEN = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("path", "params", "headers", "signed", "signature"), [
    ("/test.txt", [], {"Range": "bytes=0-9"}, "host;range;x-amz-content-sha256;x-amz-date",
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("/", [("lifecycle", "")], {}, "host;x-amz-content-sha256;x-amz-date",
     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("/", [("prefix", "J"), ("max-keys", "2")], {}, "host;x-amz-content-sha256;x-amz-date",
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_signature_v4_matches_the_aws_examples(path: str, params: list[tuple[str, str]],
                                               headers: dict[str, str], signed: str,
                                               signature: str) -> None:
    _sign("GET", HOST, path, params, headers, EMPTY_SHA256, ACCESS, SECRET, "us-east-1", WHEN)
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={ACCESS}/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}")


def test_locations_carry_bucket_and_key_only() -> None:
    parsed = s3_location("s3://images/1b2c")
    assert parsed is not None and (parsed.bucket, parsed.key) == ("images", "1b2c")
    assert str(parsed) == "s3://images/1b2c"
    for other in ("rbd://f/images/x/snap", "s3://images", "s3:///x", "s3://k:s@host/b/x"):
        assert s3_location(other) is None


def test_endpoint_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        S3Store("http://key:secret@127.0.0.1:1", SecretStr("a"), SecretStr("b"))


async def test_a_gateway_that_does_not_answer_is_a_503_without_credentials() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store(f"http://127.0.0.1:{port}", SecretStr(ACCESS), SecretStr(SECRET))
    try:
        with pytest.raises(StoreUnavailable) as at_start:
            await store.start()
        writer = await store.writer("image")
        with pytest.raises(StoreUnavailable) as on_write:
            await writer.write(b"x" * (9 << 20))  # a full part: the multipart upload starts
    finally:
        await store.stop()
    for refused in (at_start.value, on_write.value):
        assert refused.status == 503
        assert f"object storage at http://127.0.0.1:{port} did not answer" in str(refused)
        assert ACCESS not in str(refused) and SECRET not in str(refused)
        assert refused.__suppress_context__  # httpx's error (with the request) left out


def test_errors_name_the_s3_code_only() -> None:
    import httpx

    from stratus.image.stores.base import ObjectMissing

    client = S3Store("http://127.0.0.1:1", SecretStr(ACCESS), SecretStr(SECRET)).client

    def answer(status: int, code: str) -> Exception:
        body = (f"<Error><Code>{code}</Code><Message>key {ACCESS} bad</Message></Error>"
                if code else "")
        return client.failure(httpx.Response(status, content=body.encode()), "upload")

    missing = answer(404, "NoSuchKey")
    assert isinstance(missing, ObjectMissing) and "NoSuchKey" in str(missing)
    assert isinstance(answer(404, ""), ObjectMissing)  # HEAD: no body
    for status, code in ((404, "NoSuchBucket"), (404, "NoSuchUpload"),
                         (403, "SignatureDoesNotMatch"), (500, "InternalError")):
        refused = answer(status, code)
        assert isinstance(refused, StoreUnavailable) and refused.status == 503
        assert code in str(refused) and ACCESS not in str(refused)
    assert answer(400, "EntityTooLarge").status == 413


@pytest.mark.parametrize(("endpoint", "signs"), [
    ("http://127.0.0.1:7480", False), ("http://[::1]:7480", False),
    ("http://localhost:7480", False), ("https://s3.example.org", False),
    ("http://10.0.0.5:7480", True), ("http://rgw.example.org", True),
])
def test_bodies_are_signed_unless_loopback_or_tls(endpoint: str, signs: bool) -> None:
    assert signs_payload_by_default(endpoint) is signs


@pytest.mark.parametrize("sign", [True, False])
def test_a_part_is_sent_signed_or_as_unsigned_payload(sign: bool) -> None:
    import hashlib

    client = S3Store("http://127.0.0.1:1", SecretStr(ACCESS), SecretStr(SECRET),
                     sign_payload=sign).client
    part = [b"a" * 100, b"b" * 50]
    request = client.build("PUT", "images", "key", [("partNumber", "1")], part)
    expected = hashlib.sha256(b"a" * 100 + b"b" * 50).hexdigest() if sign else (
        "UNSIGNED-PAYLOAD")
    assert request.headers["x-amz-content-sha256"] == expected
    assert "x-amz-content-sha256" in request.headers["Authorization"]  # a signed header
    assert request.headers["Content-Length"] == "150"
    # A request without a body carries the empty body's hash either way.
    empty = client.build("GET", "images", "key")
    assert empty.headers["x-amz-content-sha256"] == EMPTY_SHA256
