"""Every route of every API driven by schemathesis from the API's own OpenAPI document.

A cloud runs every API unit with ``serve_openapi`` on; its served documents must be the ones
committed in ``docs/api/`` (``make api-docs``). Then each operation is sent generated bodies,
queries and path parameters, both valid for the schema (``positive``) and violating it
(``negative``: wrong types, missing fields, malformed JSON), with huge and unicode strings as
hypothesis makes them, sometimes an odd microversion or content type. Every answer must be
below 500, and every 4xx in the API's own error format.

Hypothesis runs derandomized (the same cases every run) and without shrinking; the first
finding of an operation is reported with the request that caused it. The cloud runs on the
test's event loop; hypothesis drives it from a worker thread.

The metadata API is left out: it is no FastAPI app with an OpenAPI document, it serves guests
only through the metadata proxy's signed headers, and answers plain text, as Nova's does.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from stratus.core.web import ErrorStyle
from tests.integration.clouds import ROOT, CloudStarter, TestCloud
from tools.openapi_docs import API_UNITS, DOCS, fetch_documents, render

ADMIN_PASSWORD = "fuzz-tests-admin-pw"

# The Image API's JSON patch media types are JSON.
schemathesis.serializer.alias(["application/openstack-images-v2.1-json-patch",
                               "application/openstack-images-v2.0-json-patch"],
                              "application/json")

#: Examples per operation and generation mode (``STRATUS_FUZZ_EXAMPLES`` for a longer run).
EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "8"))

#: Each API's error style, and its mount point.
SERVICES = {"identity": (ErrorStyle.IDENTITY, "/identity"),
            "compute": (ErrorStyle.COMPUTE, "/compute"),
            "image": (ErrorStyle.PLAIN, "/image"),
            "network": (ErrorStyle.NETWORK, "/network"),
            "volume": (ErrorStyle.COMPUTE, "/volume"),
            "placement": (ErrorStyle.PLACEMENT, "/placement")}

#: Headers a case may carry besides its own: microversions odd and wrong, odd content types.
_ODD = st.one_of(
    st.fixed_dictionaries({"OpenStack-API-Version": st.sampled_from([
        "compute 2.999", "compute latest", "compute 2.1", "compute 2.a", "volume 3.999",
        "volume latest", "volume 3.0", "compute", "2.5", "compute 02.001", "image 2.1",
        "compute 2.96, volume 3.60"])}),
    st.fixed_dictionaries({"X-OpenStack-Nova-API-Version": st.sampled_from(
        ["2.90", "latest", "9.9", "x"])}),
    st.fixed_dictionaries({"Content-Type": st.sampled_from(
        ["text/plain", "application/xml", "application/json; charset=latin-1",
         "multipart/form-data", "application/openstack-images-v2.1-json-patch"])}),
    st.fixed_dictionaries({"Accept": st.sampled_from(["application/xml", "text/html"])}),
    st.fixed_dictionaries({"X-Auth-Token": st.sampled_from(["", "gAAAAA", "x" * 5000])}),
)
#: Half the cases carry none of them, so the rest of the case reaches the route.
ODD_HEADERS = st.one_of(st.just({}), _ODD)


class Finding(Exception):
    """A response that breaks the rules, with the request that caused it."""


def error_shape_problem(style: ErrorStyle, status: int, body: Any) -> str | None:
    """Why ``body`` is not ``style``'s error body for ``status``, or None when it is."""
    if not isinstance(body, dict):
        return "not a JSON object"
    if style is ErrorStyle.IDENTITY:
        error = body.get("error")
        ok = (list(body) == ["error"] and isinstance(error, dict)
              and error.get("code") == status and isinstance(error.get("message"), str))
    elif style is ErrorStyle.COMPUTE:
        inner = next(iter(body.values()), None) if len(body) == 1 else None
        ok = (isinstance(inner, dict) and inner.get("code") == status
              and isinstance(inner.get("message"), str))
    elif style is ErrorStyle.NETWORK:
        error = body.get("NeutronError")
        ok = (list(body) == ["NeutronError"] and isinstance(error, dict)
              and isinstance(error.get("type"), str) and isinstance(error.get("message"), str))
    elif style is ErrorStyle.PLACEMENT:
        errors = body.get("errors")
        ok = (list(body) == ["errors"] and isinstance(errors, list) and len(errors) == 1
              and isinstance(errors[0], dict) and errors[0].get("status") == status
              and isinstance(errors[0].get("detail"), str))
    else:
        ok = body.get("code") == status and isinstance(body.get("message"), str)
    return None if ok else "not the API's error format"


def judge(style: ErrorStyle, method: str, response: httpx.Response) -> str | None:
    """What is wrong with ``response``, or None."""
    if response.status_code >= 500:
        return f"answered {response.status_code}"
    if response.status_code < 400 or method == "HEAD":
        return None
    try:
        body = response.json()
    except ValueError:
        return f"answered {response.status_code} with a body that is not JSON"
    problem = error_shape_problem(style, response.status_code, body)
    return f"answered {response.status_code} {problem}" if problem else None


def _shorten(value: Any, limit: int = 600) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def request_kwargs(case: Any, root: str, headers: dict[str, str]) -> dict[str, Any]:
    """httpx's arguments for a schemathesis case (its own are requests' names)."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=f"{ROOT}{root}",
                                                      headers=headers)
    kwargs.pop("cookies", None)
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    return kwargs


def modes(operation: Any) -> list[GenerationMode]:
    """Negative cases only where something can be made invalid: a body, a query or a header
    (a string path parameter cannot, and hypothesis would search long to find that out)."""
    if len(operation.body) or len(operation.query) or len(operation.headers):
        return list(GenerationMode)
    return [GenerationMode.POSITIVE]


@dataclass
class Fuzzer:
    """Sends each operation's cases into the cloud, from a worker thread."""

    cloud: TestCloud
    loop: asyncio.AbstractEventLoop
    style: ErrorStyle
    root: str

    def send(self, kwargs: dict[str, Any]) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(self.cloud.client.request(**kwargs),
                                                  self.loop)
        return future.result(timeout=120)

    def operation(self, operation: Any, mode: GenerationMode,
                  known: dict[str, str]) -> str | None:
        """The first finding of ``operation`` in ``mode``, or None."""
        cases = operation.as_strategy(mode, path_parameters=known or None)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=cases, odd=ODD_HEADERS)
        def run(case: Any, odd: dict[str, str]) -> None:
            kwargs = request_kwargs(case, self.root, {**self.cloud.admin.headers, **odd})
            response = self.send(kwargs)
            problem = judge(self.style, kwargs["method"], response)
            if problem:
                raise Finding(
                    f"{operation.label} ({mode.value}) {problem}: "
                    f"{kwargs['method']} {_shorten(kwargs['url'])} "
                    f"headers={_shorten({k: v for k, v in kwargs['headers'].items()})} "
                    f"body={_shorten(kwargs.get('json', kwargs.get('content')))} -> "
                    f"{_shorten(response.text)}")

        try:
            run()
        except Finding as finding:
            return str(finding)
        except Unsatisfiable:
            pass  # nothing in the operation can be made invalid (negative mode)
        return None

    def all(self, document: dict[str, Any], ids: RealIds) -> list[str]:
        schema = schemathesis.openapi.from_dict(document)
        findings = []
        for result in schema.get_all_operations():
            operation = result.ok()
            known = ids.for_path(operation.path, operation.method.upper())
            for mode in modes(operation):
                finding = self.operation(operation, mode, known)
                if finding:
                    findings.append(finding)
        return findings


@dataclass
class RealIds:
    """Ids of resources made for the fuzzing, so cases reach past the lookup of their path's
    resource into the route's own work. A path parameter takes one when its name is in
    ``by_name`` or the collection before it is in ``by_collection``; never for a DELETE
    (the resource stays for the other operations)."""

    by_name: dict[str, str]
    by_collection: dict[str, str]

    def for_path(self, path: str, method: str) -> dict[str, str]:
        if method == "DELETE":
            return {}
        known = {}
        segments = path.strip("/").split("/")
        for before, segment in zip(["", *segments], segments, strict=False):
            if not (segment.startswith("{") and segment.endswith("}")):
                continue
            name = segment[1:-1]
            value = self.by_collection.get(before) or self.by_name.get(name)
            if value is not None:
                known[name] = value
        return known


async def _made(cloud: TestCloud, method: str, path: str, key: str, body: Any = None,
                headers: dict[str, str] | None = None, content: bytes | None = None) -> Any:
    response = await cloud.client.request(method, path, json=body, content=content,
                                          headers={**cloud.admin.headers, **(headers or {})})
    assert response.status_code < 300, (path, response.text)
    return response.json()[key]["id"] if key else None


async def real_ids(cloud: TestCloud, service: str) -> RealIds:
    """Resources of ``service`` made by the admin for the fuzzing, by path parameter."""
    name = f"fz-{uuid.uuid4().hex[:6]}"
    if service == "identity":
        v3 = "/identity/v3"
        ids = {"user": await _made(cloud, "POST", f"{v3}/users", "user",
                                   {"user": {"name": name, "password": f"{name}-pw"}}),
               "project": await _made(cloud, "POST", f"{v3}/projects", "project",
                                      {"project": {"name": name}}),
               "group": await _made(cloud, "POST", f"{v3}/groups", "group",
                                    {"group": {"name": name}}),
               "role": await _made(cloud, "POST", f"{v3}/roles", "role",
                                   {"role": {"name": name}}),
               "domain": await _made(cloud, "POST", f"{v3}/domains", "domain",
                                     {"domain": {"name": name}})}
        return RealIds({"user_id": ids["user"], "actor_id": ids["user"],
                        "project_id": ids["project"], "group_id": ids["group"],
                        "role_id": ids["role"], "domain_id": ids["domain"]},
                       {"projects": ids["project"], "domains": ids["domain"]})
    if service == "placement":  # read-only; the fuzz cloud has no host, so no provider
        return RealIds({"project_id": cloud.admin.project_id}, {})
    image = (await cloud.client.post("/image/v2/images", headers=cloud.admin.headers, json={
        "name": name, "disk_format": "raw", "container_format": "bare"})).json()["id"]
    if service == "image":
        return RealIds({"image_id": image}, {})
    if service == "compute":
        await _made(cloud, "PUT", f"/image/v2/images/{image}/file", "", content=b"\0" * 512,
                    headers={"Content-Type": "application/octet-stream"})
        v21 = "/compute/v2.1"
        flavor = await _made(cloud, "POST", f"{v21}/flavors", "flavor", {"flavor": {
            "name": name, "ram": 64, "vcpus": 1, "disk": 1}})
        await _made(cloud, "POST", f"{v21}/os-keypairs", "", {"keypair": {"name": name}})
        group = await _made(cloud, "POST", f"{v21}/os-server-groups", "server_group", {
            "server_group": {"name": name, "policies": ["anti-affinity"]}})
        server = await _made(cloud, "POST", f"{v21}/servers", "server", {"server": {
            "name": name, "flavorRef": flavor, "imageRef": image, "networks": "none"}},
            headers={"OpenStack-API-Version": "compute 2.37"})
        return RealIds({"server_id": server, "flavor_id": flavor, "name": name,
                        "group_id": group, "image_id": image,
                        "project_id": cloud.admin.project_id}, {})
    if service == "network":
        v2 = "/network/v2.0"
        net = await _made(cloud, "POST", f"{v2}/networks", "network", {"network": {
            "name": name}})
        subnet = await _made(cloud, "POST", f"{v2}/subnets", "subnet", {"subnet": {
            "network_id": net, "cidr": "10.9.0.0/24", "ip_version": 4}})
        port = await _made(cloud, "POST", f"{v2}/ports", "port", {"port": {
            "network_id": net}})
        router = await _made(cloud, "POST", f"{v2}/routers", "router", {"router": {
            "name": name}})
        group = await _made(cloud, "POST", f"{v2}/security-groups", "security_group", {
            "security_group": {"name": name}})
        rule = await _made(cloud, "POST", f"{v2}/security-group-rules",
                           "security_group_rule", {"security_group_rule": {
                               "security_group_id": group, "direction": "ingress"}})
        return RealIds({"router_id": router, "project_id": cloud.admin.project_id,
                        "collection": "networks", "resource_id": net},
                       {"networks": net, "subnets": subnet, "ports": port,
                        "routers": router, "security-groups": group,
                        "security-group-rules": rule})
    project = cloud.admin.project_id
    v3 = f"/volume/v3/{project}"
    volume = await _made(cloud, "POST", f"{v3}/volumes", "volume", {"volume": {"size": 1}})
    kind = await _made(cloud, "POST", f"{v3}/types", "volume_type", {"volume_type": {
        "name": name}})
    # Block storage's paths carry the project: the admin's, so the bodies get looked at.
    return RealIds({"project_id": project, "volume_id": volume, "type_id": kind}, {})


@pytest.fixture
async def fuzz_cloud(db_url: str, tmp_path: Path) -> Any:
    starter = CloudStarter(db_url, tmp_path, ADMIN_PASSWORD)
    try:
        yield await starter.start(TestCloud, (*API_UNITS, "scheduler", "conductor",
                                              "volume-manager"),
                                  f"memory://fuzz-{uuid.uuid4().hex[:8]}",
                                  serve_openapi=True, volume={"host": "storage-1"})
    finally:
        await starter.aclose()


async def test_openapi_documents_are_served_and_published(fuzz_cloud: TestCloud) -> None:
    """``<prefix>/openapi.json`` answers the documents committed in ``docs/api/``."""
    documents = await fetch_documents(fuzz_cloud.client)
    assert sorted(documents) == sorted(SERVICES)
    for service, document in documents.items():
        committed = (DOCS / f"{service}.json").read_text()
        assert committed == render(document), (
            f"docs/api/{service}.json is stale: run make api-docs")


async def test_openapi_is_not_served_by_default(db_url: str, tmp_path: Path) -> None:
    starter = CloudStarter(db_url, tmp_path, ADMIN_PASSWORD)
    try:
        cloud = await starter.start(TestCloud, ("identity-api", "network-api"),
                                    f"memory://fuzz-{uuid.uuid4().hex[:8]}")
        response = await cloud.client.get("/network/openapi.json",
                                          headers=cloud.admin.headers)
        assert response.status_code == 404
        assert "NeutronError" in response.json()
    finally:
        await starter.aclose()


@pytest.fixture
def one_ast_parse_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise ``ast.parse`` across threads for the test.

    CPython 3.11 counts the AST constructor's recursion depth in interpreter-wide state, so two
    threads parsing at once can fail one of them with ``SystemError: AST constructor recursion
    depth mismatch`` (python/cpython#106905 and kin). Here two threads parse: the fuzzing worker,
    when schemathesis and hypothesis import modules lazily and pytest rewrites them, and the
    loop's thread, when Python 3.11 formats a traceback (it parses the failing line to place
    its carets). Both go through ``ast.parse``.
    """
    lock = threading.Lock()
    parse = ast.parse

    def parse_alone(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return parse(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", parse_alone)


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.usefixtures("one_ast_parse_at_a_time")
async def test_every_route_answers_below_500_in_its_error_format(
        fuzz_cloud: TestCloud, service: str) -> None:
    style, root = SERVICES[service]
    document = (await fuzz_cloud.client.get(f"{root}/openapi.json")).json()
    ids = await real_ids(fuzz_cloud, service)
    fuzzer = Fuzzer(fuzz_cloud, asyncio.get_running_loop(), style, root)
    findings = await asyncio.to_thread(fuzzer.all, document, ids)
    assert not findings, "\n".join(findings)


def test_error_shapes_are_recognised() -> None:
    """The judge knows each style's own body (so a finding is never the judge's mistake)."""
    for style in ErrorStyle:
        body = json.loads(json.dumps(style.body(404, "gone")))
        assert error_shape_problem(style, 404, body) is None
        assert error_shape_problem(style, 404, {"detail": "gone"}) is not None
