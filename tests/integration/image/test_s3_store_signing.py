"""The ``s3`` store's two ways of sending a part to the run's real RADOS gateway: signed
(SigV4's sha256 of the body, which the gateway checks) and ``UNSIGNED-PAYLOAD`` (the default
to a loopback gateway); both store and read back the same bytes."""

from __future__ import annotations

import os
import uuid

import pytest
from pydantic import SecretStr

from stratus.core.ceph_dev import DevCluster
from stratus.image.stores.s3 import S3Store

MiB = 1 << 20


def _store(cluster: DevCluster, bucket: str, sign: bool | None) -> S3Store:
    s3 = cluster.s3()
    return S3Store(s3.endpoint, SecretStr(s3.access_key), SecretStr(s3.secret_key),
                   bucket=bucket, part_size=5 * MiB, sign_payload=sign)


@pytest.mark.parametrize("sign", [True, None])
async def test_parts_signed_or_unsigned_round_trip(ceph_cluster: DevCluster,
                                                   sign: bool | None) -> None:
    bucket = f"sign-{uuid.uuid4().hex[:12]}"
    store = _store(ceph_cluster, bucket, sign)
    await store.start()
    try:
        assert store.client.sign_payload is bool(sign)  # None: a loopback gateway, unsigned
        data = os.urandom(11 * MiB + 5)  # two parts and a short last one
        writer = await store.writer("image")
        for offset in range(0, len(data), 4 * MiB):
            await writer.write(data[offset:offset + 4 * MiB])
        location = await writer.commit()
        reader = await store.open(location)
        assert b"".join([chunk async for chunk in reader.chunks()]) == data
        await store.delete(location)
    finally:
        await store.client.call("DELETE", bucket, what="bucket removal", ok=(204, 404, 409))
        await store.stop()


async def test_the_gateway_checks_a_signed_body(ceph_cluster: DevCluster) -> None:
    bucket = f"sign-{uuid.uuid4().hex[:12]}"
    store = _store(ceph_cluster, bucket, True)
    await store.start()
    try:
        # The body's hash signed is not the body's: the gateway refuses (which it cannot do
        # for an unsigned one: that is what TLS or loopback stand in for).
        request = store.client.build("PUT", bucket, "image", body=b"sent",
                                     payload_sha256="0" * 64)
        response = await store.client.send(request)
        assert response.status_code == 400, response.text
        assert "XAmzContentSHA256Mismatch" in str(store.client.failure(response, "upload"))
        assert not await store.exists(f"s3://{bucket}/image")
    finally:
        await store.client.call("DELETE", bucket, what="bucket removal", ok=(204, 404, 409))
        await store.stop()
