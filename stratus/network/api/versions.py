"""Discovery (no token needed): ``GET /`` (versions), ``GET /v2.0`` (resources) and
``/v2.0/extensions`` (the aliases this cloud implements; clients decide features from it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stratus.core.exceptions import NotFound
from stratus.core.web.app import api_root
from stratus.network.errors import InvalidInput

router = APIRouter()

UPDATED = "2026-11-22T00:00:00-00:00"

#: (alias, name, description) of every extension implemented.
EXTENSIONS = [
    ("agent", "agent", "The agent management extension."),
    ("availability_zone", "Availability Zone", "The availability zone extension."),
    ("network_availability_zone", "Network Availability Zone",
     "Availability zone support for network."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external "
                                "application"),
    ("external-net", "Neutron external network", "Adds external network attribute to "
                                                 "network resource."),
    # Subnets of external networks are everyone's to see, with their network's flag.
    ("subnet-external-network", "Subnet External Network",
     "Informs if the subnet is associated with an external network."),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a "
                                               "subnet pool"),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a "
                                                   "subnetpool as the default."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical "
                                     "networks"),
    ("security-group", "security-group", "The security groups extension."),
    ("stateful-security-group", "Stateful security group",
     "Indicates if the security group is stateful or not"),
    ("quotas", "Quota management support", "Expose functions for quotas management per "
                                           "tenant"),
    ("quota_details", "Quota details management support",
     "Expose functions for quotas usage statistics per project"),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs",
     "Provides allowed address pairs"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("standard-attr-description", "standard-attr-description",
     "Extension to add descriptions to standard attributes"),
    ("standard-attr-tag", "Tag support for resources with standard attribute: subnet, "
                          "port, network, security_group",
     "Enables to set tag on resources with standard attribute."),
    ("standard-attr-revisions", "Resource revision numbers",
     "This extension will display the revision number of neutron resources."),
    ("standard-attr-timestamp", "Resource timestamps",
     "Adds created_at and updated_at fields to all Neutron resources that have Neutron "
     "standard attributes."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id "
                                               "field is enabled."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is "
                                         "enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("filter-validation", "Filter parameters validation",
     "Provides validation on filter parameters."),
    # Routers and floating IPs (the L3 service).
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 "
                                    "Neutron networks and access to external networks via "
                                    "a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
     "Extension of the router abstraction for specifying whether SNAT should occur on the "
     "external gateway"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("fip-port-details", "Floating IP Port Details Extension",
     "Add port_details attribute to Floating IP resource"),
    ("router_availability_zone", "Router Availability Zone",
     "Availability zone support for router."),
]

RESOURCES = [("network", "networks"), ("subnet", "subnets"),
             ("subnetpool", "subnetpools"), ("port", "ports"),
             ("security_group", "security-groups"),
             ("security_group_rule", "security-group-rules"), ("quota", "quotas"),
             ("agent", "agents"), ("availability_zone", "availability_zones"),
             ("router", "routers"), ("floatingip", "floatingips")]


def _extension(alias: str, name: str, description: str) -> dict[str, object]:
    return {"alias": alias, "name": name, "description": description, "updated": UPDATED,
            "links": []}


@router.get("/")
async def versions(request: Request) -> JSONResponse:
    root = api_root(request)
    return JSONResponse({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
        {"href": f"{root}/v2.0/", "rel": "self"}]}]})


@router.get("/v2.0")
@router.get("/v2.0/")
async def resources(request: Request) -> JSONResponse:
    root = api_root(request)
    return JSONResponse({"resources": [
        {"name": name, "collection": collection,
         "links": [{"href": f"{root}/v2.0/{collection}", "rel": "self"}]}
        for name, collection in RESOURCES]})


@router.get("/v2.0/extensions")
async def extensions() -> JSONResponse:
    return JSONResponse({"extensions": [_extension(*e) for e in EXTENSIONS]})


@router.get("/v2.0/extensions/{alias}")
async def extension(alias: str) -> JSONResponse:
    for entry in EXTENSIONS:
        if entry[0] == alias:
            return JSONResponse({"extension": _extension(*entry)})
    if not alias:
        raise InvalidInput("An extension alias is required.")
    raise NotFound(f"Extension with alias {alias} does not exist")
