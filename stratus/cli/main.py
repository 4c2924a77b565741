"""``stratus``: the operator's command.

``stratus up`` runs the whole cloud in one process; ``stratus serve UNIT`` runs one unit;
``stratus db upgrade`` and ``stratus bootstrap`` prepare databases and the first admin;
``stratus identity rotate-keys`` rotates the Fernet keys; ``stratus doctor`` says which
optional parts this machine can run and how to add the rest; ``stratus trace`` shows a
request's path as the seeds' step table and ``stratus why`` why a server failed.
"""

from __future__ import annotations

import gc

# The command's own imports (typer, uvicorn, pydantic, the settings: a quarter of a warm
# start's CPU) only make objects that live as long as the process, yet the cyclic
# collector's passes walked them as they came: ~4% of the imports' instructions
# (callgrind). Off while importing; back as it was after, for every command (``_serve``
# turns it off again for the rest of a start).
_COLLECTING = gc.isenabled()
gc.disable()
try:
    import asyncio
    import contextlib
    import logging
    import os
    import signal
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path
    from typing import TYPE_CHECKING, Annotated, Any

    import typer
    import uvicorn

    from stratus.cli.ceph import ceph_app
    from stratus.cli.options import DataDir, console
    from stratus.core.config import Settings
    from stratus.core.logging import LOG_FILE, setup_logging
    from stratus.core.tracing import setup_tracing
finally:
    if _COLLECTING:
        gc.enable()

if TYPE_CHECKING:
    from stratus.schemas import Databases

LOG = logging.getLogger(__name__)

app = typer.Typer(help="Operate a Stratus cloud.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
db_app = typer.Typer(help="Databases.", no_args_is_help=True)
identity_app = typer.Typer(help="Identity service administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(identity_app, name="identity")
guest_image_app = typer.Typer(help="The project's test guest image.", no_args_is_help=True)
app.add_typer(guest_image_app, name="guest-image")
app.add_typer(ceph_app, name="ceph")

Host = Annotated[str | None, typer.Option(
    "--host", help="Address to listen on [default: $STRATUS_HOST or 127.0.0.1].")]
Port = Annotated[int | None, typer.Option(
    "--port", help="Port to listen on [default: $STRATUS_PORT or 8080].")]
LogJson = Annotated[bool, typer.Option(
    "--log-json", help="Log one JSON object per line, with the request id, trace id and "
                       "instance uuid where known [default: $STRATUS_LOG_FORMAT or text].")]



def _settings(data_dir: Path | None = None, host: str | None = None,
              port: int | None = None, *, log_to_file: bool = False,
              verbose: bool = True, log_json: bool = False, spans: bool = False) -> Settings:
    """The settings, with the data directory made and logging set up: to the console, or
    (``log_to_file``) to ``DIR/stratus.log`` with only errors on the console unless
    ``verbose``; as JSON lines with ``log_json`` (or ``log_format = "json"``). ``spans``: a
    process serving units, whose spans go to the span store (``tracing.store``)."""
    overrides: dict[str, Any] = {}
    if log_json:
        overrides["log_format"] = "json"
    if data_dir is not None:
        overrides["data_dir"] = data_dir.resolve()
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from stratus.core.db_pool import configure_pools

    configure_pools(settings.database_pool_size, settings.database_max_overflow)
    setup_logging(settings.log_level,
                  log_file=settings.data_dir / LOG_FILE if log_to_file else None,
                  console_level=logging.NOTSET if verbose else logging.ERROR,
                  json_lines=settings.log_format == "json")
    if settings.tracing.enabled:
        setup_tracing("stratus", settings.tracing.otlp_endpoint)
        if settings.tracing.store and spans:
            from stratus.core.spanstore import enable_span_store

            enable_span_store(settings.data_dir, max_age=settings.tracing.store_max_age,
                              max_spans=settings.tracing.store_max_spans)
    return settings


def http_config(app: Any, settings: Settings, port: int, *, apis: bool = False) -> uvicorn.Config:
    """How every Stratus process serves HTTP on ``settings.host``: our logging, no access
    log or server header, idle connections kept ``settings.keep_alive_timeout``, request
    bodies read as ``stratus.core.web.http_protocol`` says. ``apis`` (the APIs' server):
    HTTPS with ``settings.tls``'s certificate when set (idle connections then dropped rather
    than closed at shutdown); a bus-only process's ``/metrics`` stays plain HTTP for the
    scrapers that read it."""
    from stratus.core.web.http_protocol import HttpProtocol, IdleDroppingProtocol

    options: dict[str, Any] = {"http": HttpProtocol}
    if apis and settings.tls.enabled:
        options = {"ssl_certfile": str(settings.tls.cert_file),
                   "ssl_keyfile": str(settings.tls.key_file), "http": IdleDroppingProtocol}
    return uvicorn.Config(app, host=settings.host, port=port, log_config=None,
                          lifespan="off", access_log=False, server_header=False,
                          timeout_keep_alive=settings.keep_alive_timeout, **options)


def _enable_tls(settings: Settings) -> None:
    """``--tls``: the data directory's CA and a server certificate for every name the cloud
    is reached at (made or renewed now), set as the cloud's TLS files."""
    import socket
    from urllib.parse import urlsplit

    from stratus.core.tls import ensure_certificates

    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if settings.host not in ("0.0.0.0", "::", ""):
        names.append(settings.host)
    if settings.public_url and urlsplit(settings.public_url).hostname:
        names.append(str(urlsplit(settings.public_url).hostname))
    files = ensure_certificates(settings.data_dir / "tls", names)
    settings.tls.cert_file, settings.tls.key_file = files.cert, files.key
    settings.tls.ca_file = files.ca


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: we stop it ourselves, then clean up and exit 0.

    (uvicorn re-raises SIGTERM after shutting down, which would kill the process before the
    databases are closed.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_stop(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
        self.should_exit = True

    def request_graceful_stop(self) -> None:
        self.should_exit = True


async def _serve(settings: Settings, names: list[str] | None, *, bootstrap: bool,
                 after_up: Callable[[], Awaitable[None]] | None = None,
                 worker: int | None = None) -> None:
    """Serve ``names`` (None: every unit) until signalled. ``worker``: this process is that
    worker of a pool sharing the port (``serve --workers``): it listens with SO_REUSEPORT
    and names itself in every response."""
    # Start-up only adds objects that live as long as the process (modules, apps, routes,
    # mappers), yet each full pass of the cyclic collector walks all made so far: they
    # took a tenth of a start's CPU. One pass at the end instead (_freeze_startup_objects).
    gc.disable()
    # A first start's databases (``Databases``: made in a thread or migrated in a child) and
    # the admin's bcrypt hash (in a thread; it lets go of the GIL) begin before this process
    # imports its units (most of a start's CPU: ``up`` has not imported them either), and
    # run beside them.
    databases, admin_hash = (await _first_start_work(settings)) if bootstrap else (None, None)
    from stratus.cli.banner import up_lines
    from stratus.stack import Stack, admin_password, write_clouds_yaml
    from stratus.units import (
        UNITS,
        UnitsStart,
        ensure_default_network,
        ensure_external_network,
        run_bootstrap,
    )

    if names is None:
        names = list(UNITS)

    if bootstrap:
        _progress(settings)
    from stratus.core.spanstore import set_process_units

    set_process_units(names)
    stack = Stack(settings)
    # Which units can run here (``Unit.unavailable``): quick checks, nothing started yet.
    start = UnitsStart(stack, names,
                       worker=None if worker is None else f"{worker}/{os.getpid()}")
    finishing: asyncio.Task[None] | None = None

    async def choose_virt_driver() -> None:
        if "compute-agent" in names and settings.compute.virt_driver is None:
            from stratus.compute.virt.select import choose_driver

            choice = await choose_driver(settings)
            settings.compute.virt_driver = choice.name
            if choice.name == "fake":
                stack.chose("virt driver", f"fake, {settings.compute.fake_hosts} host(s): no "
                                           f"real guests ({choice.reason})")
            else:
                stack.chose("virt driver", f"{choice.name} ({choice.reason})")
            if not bootstrap:
                console.print(f"Compute: the {choice.name} virt driver ({choice.reason})")

    async def first_start_networks() -> None:
        if bootstrap:
            await ensure_default_network(stack)
            for line in await ensure_external_network(stack):
                console.print(line)

    async def start_the_rest() -> None:
        """With identity served first: what it does not need, done while it serves (the
        virt driver's choice, with libvirt's probe: seconds on a first start; the other
        units; a first start's networks). Requests to the other units wait for it."""
        await choose_virt_driver()
        await start.rest()
        await first_start_networks()
        start.open()

    try:
        running = [unit.name for unit in start.running]
        if not bootstrap:
            for name, reason in stack.not_started.items():
                console.print(f"{name}: not started: {reason}", markup=False,
                              highlight=False)
            if not running:
                console.print("[red]None of the units can run here.[/]")
                raise typer.Exit(1)
        if databases is not None:  # before any unit opens its database
            await databases.wait()
            databases = None
        if bootstrap:
            await run_bootstrap(stack, admin_password_hash=admin_hash)
        if not start.serves_early:
            await choose_virt_driver()
        asgi = await start.first()
        if not start.serves_early:
            await first_start_networks()
        if all(UNITS[name].prefix is None for name in running):
            await _serve_bus_only(settings, running)
            return
        server = _Server(http_config(asgi, settings, settings.port, apis=True))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.request_stop)
        sockets = None
        if worker is not None:
            from stratus.cli.workers import reuse_port_socket

            sockets = [reuse_port_socket(settings.host, settings.port)]
            # The pool's parent passes its SIGTERM on to workers that had it already (one
            # process group): asked twice is still a graceful stop.
            loop.add_signal_handler(signal.SIGTERM, server.request_graceful_stop)
        serving = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        started = server.started
        if started and start.serves_early:
            finishing = asyncio.create_task(start_the_rest())
            await asyncio.wait([finishing, serving], return_when=asyncio.FIRST_COMPLETED)
            started = finishing.done() and finishing.exception() is None
            if not finishing.done():  # stopped (signalled) while starting
                finishing.cancel()
            elif not started:
                server.should_exit = True  # and the error is raised below, once stopped
        if started:
            _freeze_startup_objects()
            if bootstrap:
                if after_up is not None:  # before "up": ready means ready with it
                    await after_up()
                clouds = write_clouds_yaml(settings, admin_password(settings))
                for line in up_lines(base_url=settings.base_url, names=names,
                                     not_started=stack.not_started, choices=stack.choices,
                                     clouds_yaml=clouds,
                                     log_file=settings.data_dir / LOG_FILE):
                    console.print(line, markup=False, highlight=False)
                print(f"export OS_CLIENT_CONFIG_FILE={clouds}", flush=True)
                console.print("Then: openstack --os-cloud stratus token issue   "
                              "(stratus doctor: what else this machine can run)",
                              markup=False, highlight=False)
            else:
                pool = "" if worker is None else f" (worker {worker}, pid {os.getpid()})"
                console.print(f"[bold green]{', '.join(names)}[/] serving at "
                              f"{settings.base_url}{pool}")
        await serving
        if finishing is not None and finishing.done() and not finishing.cancelled():
            finishing.result()  # the start's failure, if it failed
    finally:
        if finishing is not None:
            finishing.cancel()
            await asyncio.gather(finishing, return_exceptions=True)
        start.fail(RuntimeError("the process stopped before it had started"))
        if databases is not None:  # start-up failed before waiting for it
            databases.stop()
        await stack.aclose()


async def _first_start_work(settings: Settings) -> tuple[Databases | None,
                                                       asyncio.Future[str] | None]:
    """What ``stratus up`` begins before importing its units (the SQLAlchemy it runs on
    included), when a database is not at its schema's head (``services_behind``: SQLite
    files read with the standard library). When identity's is one of them (a first start:
    no admin yet), the bcrypt hash of the admin password that bootstrap gives the admin it
    creates is begun first, in a thread: the longest of a first start's work (~0.25 s of a
    core at cost 12), it then runs beside all of the rest. Then the databases are brought
    to their heads (``stratus.schemas.Databases``: a missing SQLite database made from its
    snapshot in another thread, the others migrated by a child), to be waited for before
    any unit opens one. (None, None) when every database was at its head."""
    from stratus.schemas import Databases, database_urls, services_behind

    urls = database_urls(settings)
    behind = await services_behind(urls)
    if not behind:
        return None, None
    admin_hash = None
    if "identity" in behind:
        from stratus.core.generated_secrets import admin_password
        from stratus.identity.passwords import hash_secret_sync

        # run_in_executor hands it to a thread now, not when the event loop next runs.
        admin_hash = asyncio.get_running_loop().run_in_executor(
            None, hash_secret_sync, admin_password(settings), settings.identity.bcrypt_rounds)
    return Databases({service: urls[service] for service in behind}), admin_hash


#: The cyclic collector's thresholds once serving (``gc.set_threshold``): a first-generation
#: pass per 20,000 container objects made rather than per 700. A request or a bus message
#: makes hundreds, most of them freed by their reference counts; at 700 the passes came
#: every few requests and moved what those in flight held into the older generations, whose
#: passes then walked it again: 3.5 s of the collector's CPU over a 1,000-boot run of
#: ``benchmarks boot``, 1.0 s at these (``bootcpu``: 0.61 -> 0.03 ms per boot).
COLLECTOR_THRESHOLDS = (20_000, 20, 20)


def _freeze_startup_objects() -> None:
    """Keep what start-up made (modules, apps, routes, mappers: ~270,000 objects) out of the
    cyclic collector's full passes. Each full pass would walk them all again (~0.15 s of CPU
    here, a few per thousand requests) though they live as long as the process. Start-up's
    garbage is collected first: frozen, what it holds would never be let go (frozen without
    this, one boot at a time took 113-251 ms instead of 45-85 ms). The collector, off
    while starting, runs from here on, at the serving thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    gc.enable()
    _return_freed_heap()


def _return_freed_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``): start-up
    freed much of what it allocated (imports' temporaries, the apps' construction), which
    glibc otherwise keeps resident for the process's whole life (~2 MB here). Elsewhere
    (another libc) nothing."""
    import ctypes

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own symbols
    if trim is not None:
        trim(0)


def _progress(settings: Settings) -> None:
    """One line while the databases, keys and admin are made (seconds on a first start)."""
    if (settings.data_dir / "clouds.yaml").exists():
        console.print(f"Starting Stratus from {settings.data_dir} ...", markup=False,
                      highlight=False)
    else:
        console.print(f"First start: creating the databases, keys and admin user in "
                      f"{settings.data_dir} (a few seconds) ...", markup=False, highlight=False)


async def _serve_bus_only(settings: Settings, names: list[str]) -> None:
    """Units with no API (scheduler, conductor, compute-agent) serve the bus until signalled,
    and ``/metrics`` on ``metrics.port`` (a free port when 0; the start line says which)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from stratus.core.metrics import metrics_endpoint

    app = Starlette(routes=[Route("/metrics", metrics_endpoint)])
    server = _Server(http_config(app, settings, settings.metrics.port))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.request_stop)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    if not server.started:
        await serving
        console.print(f"[red]{', '.join(names)}: /metrics could not listen on "
                      f"{settings.host}:{settings.metrics.port}[/]")
        raise typer.Exit(1)
    _freeze_startup_objects()
    port = server.servers[0].sockets[0].getsockname()[1]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    console.print(f"[bold green]{', '.join(names)}[/] serving on the bus; metrics at "
                  f"http://{host}:{port}/metrics")
    await serving


@app.command()
def up(data_dir: DataDir = None, host: Host = None, port: Port = None,
       virt_driver: Annotated[str | None, typer.Option(
           "--virt-driver", help="Hypervisor driver of the compute agents: fake or libvirt "
                                 "[default: libvirt where usable, else fake].")
       ] = None,
       with_test_image: Annotated[bool, typer.Option(
           "--with-test-image", help="Publish the test guest (built if needed) as the public "
                                     "image stratus-test-guest.")
       ] = False,
       fake_hosts: Annotated[int | None, typer.Option(
           "--fake-hosts", min=0, help="How many fake compute hosts to run [default: 1].")
       ] = None,
       network_backend: Annotated[str | None, typer.Option(
           "--network-backend", help="noop or linuxbridge [default: linuxbridge when root "
                                     "with dnsmasq installed, else noop].")
       ] = None,
       storage: Annotated[str | None, typer.Option(
           "--storage", help="file, or ceph: images in RBD (pool images; on the RADOS "
                             "gateway instead with image.store s3), volumes in RBD "
                             "(pool volumes) and guests' disks in RBD (pool vms) of the "
                             "cluster of ceph.conf (settings ceph.*; else the one "
                             "`stratus ceph up` made in DATA_DIR/ceph).")
       ] = None,
       verbose: Annotated[bool, typer.Option(
           "--verbose", "-v", help="Log to the console too (the log is always in "
                                   "DIR/stratus.log).")
       ] = False,
       tls: Annotated[bool, typer.Option(
           "--tls", help="Serve HTTPS with a certificate of the cloud's own CA, both made in "
                         "DIR/tls (clouds.yaml names the CA as cacert).")
       ] = False,
       log_json: LogJson = False) -> None:
    """Run every unit in one process, one port; bootstrap on first start. Ctrl-C stops it."""
    settings = _settings(data_dir, host, port, log_to_file=True, verbose=verbose,
                         log_json=log_json, spans=True)
    if tls:
        _enable_tls(settings)
    if storage is not None:
        _choose_storage(settings, storage)
    if virt_driver is not None:
        if virt_driver not in ("fake", "libvirt"):
            console.print(f"[red]Unknown virt driver {virt_driver!r}.[/] Use fake or libvirt.")
            raise typer.Exit(2)
        settings.compute.virt_driver = virt_driver
    if settings.compute.virt_driver == "libvirt":
        from stratus.compute.virt.libvirt.host import usable

        missing = usable()
        if missing is not None:  # say it now, not in every guest's fault
            console.print(f"[red]The libvirt virt driver cannot run here:[/] {missing}",
                          highlight=False)
            raise typer.Exit(2)
    if fake_hosts is not None:
        settings.compute.fake_hosts = fake_hosts
    if network_backend is not None:
        if network_backend not in ("noop", "linuxbridge"):
            console.print(f"[red]Unknown network backend {network_backend!r}.[/] "
                          "Use noop or linuxbridge.")
            raise typer.Exit(2)
        settings.network.backend = network_backend
    after_up = (lambda: _publish_test_image(settings)) if with_test_image else None
    from stratus.core.exceptions import ServiceUnavailable

    try:
        asyncio.run(_serve(settings, None, bootstrap=True, after_up=after_up))
    except ServiceUnavailable as exc:  # Ceph or the object storage is down, or refuses us
        console.print(f"[red]Stratus cannot start:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc


def _choose_storage(settings: Settings, storage: str) -> None:
    """``--storage``: ``file`` (the embedded default) or ``ceph`` (image store and volume
    backend ``rbd`` at once); says which cluster, or why Ceph cannot be used, and exits."""
    if storage == "file":
        settings.image.store, settings.volume.backend = "file", "file"
        settings.compute.images_type = "qcow2"
        return
    if storage != "ceph":
        console.print(f"[red]Unknown storage {storage!r}.[/] Use file or ceph.")
        raise typer.Exit(2)
    from stratus.core.ceph import CephUnavailable, bindings

    try:
        bindings()
    except CephUnavailable as exc:
        console.print(f"[red]--storage ceph:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    ceph = settings.ceph
    if "conf" not in ceph.model_fields_set and not ceph.conf.exists():
        # No cluster configured: the development cluster of `stratus ceph up`, if made.
        dev = settings.data_dir / "ceph"
        if (dev / "ceph.conf").exists():
            ceph.conf = dev / "ceph.conf"
            ceph.keyring = dev / "ceph.client.stratus.keyring"
    if not ceph.conf.exists():
        console.print(f"[red]--storage ceph: no Ceph configuration at {ceph.conf}.[/] Set "
                      "STRATUS_CEPH__CONF (and __KEYRING), or run `stratus ceph up`.",
                      highlight=False)
        raise typer.Exit(2)
    image = settings.image
    if image.store == "s3":
        # Images on the cluster's RADOS gateway, as the operator set: volumes and guests'
        # disks are then imported from a download rather than cloned.
        _s3_from_dev_cluster(settings)
        where = f"images in bucket {image.s3_store_bucket} at {image.s3_store_host} (S3)"
    else:
        image.store = "rbd"
        where = f"images in RBD pool {image.rbd_store_pool}"
    settings.volume.backend = "rbd"
    settings.compute.images_type = "rbd"
    console.print(f"Storage: Ceph of {ceph.conf} as client.{ceph.user}: {where}, volumes in "
                  f"{settings.volume.rbd_pool}, guests' disks in "
                  f"{settings.compute.images_rbd_pool}", markup=False, highlight=False)


def _s3_from_dev_cluster(settings: Settings) -> None:
    """Image store ``s3`` under ``--storage ceph``: the endpoint and keys not set are the
    ones ``stratus ceph up`` made next to the cluster's conf; exits when there are none."""
    import json

    from pydantic import SecretStr

    image = settings.image
    made = settings.ceph.conf.parent / "s3.json"
    if made.exists() and not (image.s3_store_host and image.s3_store_access_key
                              and image.s3_store_secret_key):
        s3 = json.loads(made.read_text())
        image.s3_store_host = image.s3_store_host or s3["endpoint"]
        image.s3_store_access_key = image.s3_store_access_key or SecretStr(s3["access_key"])
        image.s3_store_secret_key = image.s3_store_secret_key or SecretStr(s3["secret_key"])
    if not (image.s3_store_host and image.s3_store_access_key and image.s3_store_secret_key):
        console.print("[red]--storage ceph with image store s3:[/] set STRATUS_IMAGE__"
                      "S3_STORE_HOST, __S3_STORE_ACCESS_KEY and __S3_STORE_SECRET_KEY (the "
                      "RADOS gateway's endpoint and an S3 user's keys).", highlight=False)
        raise typer.Exit(2)


async def _publish_test_image(settings: Settings) -> None:
    import httpx

    from stratus.core.http import client_verify
    from stratus.guest_image import GuestImageError, ensure_image
    from stratus.guest_image.upload import publish
    from stratus.stack import admin_password

    try:
        path = await asyncio.to_thread(ensure_image, settings.data_dir / "guest-image")
        async with httpx.AsyncClient(timeout=120.0,
                                     verify=client_verify(settings.tls.ca_file)) as client:
            image_id = await publish(f"{settings.base_url}/identity/v3", "admin",
                                     admin_password(settings), path, client=client)
    except (GuestImageError, OSError) as exc:
        console.print(f"[red]The test guest image could not be published:[/] {exc}")
        return
    console.print(f"Test guest: image stratus-test-guest ({image_id})")


@guest_image_app.command("build")
def guest_image_build(
        output: Annotated[Path | None, typer.Option(
            "--output", help="Also copy the image here.")] = None,
        force: Annotated[bool, typer.Option("--force", help="Build even if cached.")] = False,
        data_dir: DataDir = None) -> None:
    """Build the test guest (Debian cloud kernel + busybox) as qcow2; cached by versions."""
    from stratus.guest_image import GuestImageError, build

    settings = _settings(data_dir)
    try:
        path = build(settings.data_dir / "guest-image", output=output, force=force)
    except GuestImageError as exc:
        console.print(f"[red]Cannot build the test guest:[/] {exc}")
        raise typer.Exit(1) from exc
    print(path)


@app.command()
def serve(units: Annotated[list[str], typer.Argument(
              help="The units to run, e.g. identity-api, or scheduler conductor.")],
          data_dir: DataDir = None, host: Host = None, port: Port = None,
          log_json: LogJson = False,
          workers: Annotated[int, typer.Option(
              "--workers", min=1,
              help="Processes serving these API units on the one port (SO_REUSEPORT), "
                   "each restarted when it dies; split mode only (a RabbitMQ bus and "
                   "PostgreSQL databases, which they share).")] = 1,
          pool_worker: Annotated[int | None, typer.Option(
              "--pool-worker", hidden=True, help="This process is that worker of a pool.")
          ] = None) -> None:
    """Run some units in this process (split mode: set bus_url and database_url). Units with
    an API serve ``/metrics`` on its port; bus-only units on ``metrics.port``. With
    ``--workers N``, N processes serve the API units on one port."""
    from stratus.units import UNITS

    unknown = [u for u in units if u not in UNITS]
    if unknown:
        console.print(f"[red]Unknown unit {unknown[0]!r}.[/] Units: {', '.join(UNITS)}")
        raise typer.Exit(2)
    names = list(dict.fromkeys(units))
    if workers > 1 and pool_worker is None:
        _serve_pool(names, workers, _settings(data_dir, host, port, log_json=log_json),
                    log_json=log_json)
        return
    settings = _settings(data_dir, host, port, log_json=log_json, spans=True)
    asyncio.run(_serve(settings, names, bootstrap=False, worker=pool_worker))


def _serve_pool(names: list[str], count: int, settings: Settings, *, log_json: bool) -> None:
    """``serve --workers``: the parent of the pool (``stratus.cli.workers``)."""
    import sys

    from stratus.cli.workers import Pool, pool_refusal

    refusal = pool_refusal(settings, names)
    if refusal is not None:
        console.print(f"[red]--workers:[/] {refusal}", highlight=False)
        raise typer.Exit(2)

    def command(index: int) -> list[str]:
        return [sys.executable, "-c", "from stratus.cli.main import main; main()", "serve",
                *names, "--data-dir", str(settings.data_dir), "--host", settings.host,
                "--port", str(settings.port), *(["--log-json"] if log_json else []),
                "--pool-worker", str(index)]

    def say(line: str) -> None:
        console.print(f"pool of {', '.join(names)}: {line}", markup=False, highlight=False)

    try:
        code = Pool(command, count, say=say).run(settings.host, settings.port)
    except OSError as exc:
        console.print(f"[red]Cannot listen on {settings.host}:{settings.port}:[/] {exc}",
                      highlight=False)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@app.command()
def trace(key: Annotated[str, typer.Argument(
              help="A server's id, or a request id (req-...).")],
          as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
          os_cloud: Annotated[str | None, typer.Option(
              "--os-cloud",
              help="Ask this cloud of clouds.yaml (its admin route os-stratus-trace) "
                   "instead of reading the data directory's span store. Never taken from "
                   "$OS_CLOUD: an exported cloud must not turn a local read remote.")] = None,
          data_dir: DataDir = None) -> None:
    """A request's path, or every request about a server, as the seeds' step table: step,
    from → to, what, unit and host, start offset, duration and outcome (from the span
    store in the data directory, or through the cloud's API)."""
    import json

    from stratus.core.spanstore import SpanStore
    from stratus.core.trace_table import Row, as_lines, rows_of
    from stratus.core.trace_table import as_json as json_of

    overrides: dict[str, Any] = {"data_dir": data_dir.resolve()} if data_dir else {}
    settings = Settings(**overrides)
    if os_cloud:
        from stratus.cli.cloud import CloudError, cloud_config, get_json

        try:
            document = asyncio.run(get_json(cloud_config(os_cloud, settings.data_dir),
                                            "compute", f"/os-stratus-trace/{key}"))["trace"]
        except CloudError as exc:
            console.print(f"[red]{os_cloud}: {exc}[/]", highlight=False)
            raise typer.Exit(1) from None
        rows = [Row(**step) for step in document["steps"]]
    else:
        store = SpanStore(settings.data_dir)
        try:
            rows = rows_of(store, key)
        finally:
            store.close()
        if not rows:
            console.print(f"[red]No spans of {key} in {store.path}.[/] Spans are kept "
                          f"{settings.tracing.store_max_age:g} s (tracing.store_max_age), "
                          "and written about a second after they end.", highlight=False)
            raise typer.Exit(1)
        document = json_of(key, rows)
    if as_json:
        print(json.dumps(document, indent=2))
        return
    for line in as_lines(key, rows):
        print(line)


@app.command()
def why(server: Annotated[str, typer.Argument(help="The server's id.")],
        log: Annotated[list[Path] | None, typer.Option(
            "--log", help="A log file of a unit (text or --log-json lines), besides "
                          "DIR/stratus.log; repeat for each unit's file.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
        os_cloud: Annotated[str | None, typer.Option(
            "--os-cloud",
            help="Ask this cloud of clouds.yaml (its admin route os-stratus-why) instead of "
                 "reading the database, span store and logs here; the cloud reads its own "
                 "host's. Never taken from $OS_CLOUD.")] = None,
        data_dir: DataDir = None) -> None:
    """Why a server is in ERROR (or stuck in a task): the step that failed, its error, the
    host, and the evidence: each scheduler filter and the hosts it removed for "No valid
    host", the request's log lines from every unit for a failed build. Reads compute's
    database (the settings' URL), the data directory's span store and the log files, or
    asks the cloud (--os-cloud)."""
    import json

    from stratus.compute.diagnosis import Diagnosis
    from stratus.compute.diagnosis import why as diagnose
    from stratus.core.db import Database
    from stratus.core.exceptions import NotFound
    from stratus.core.spanstore import SpanStore

    overrides: dict[str, Any] = {"data_dir": data_dir.resolve()} if data_dir else {}
    settings = Settings(**overrides)
    if os_cloud and log:
        console.print("[red]--log reads files here; with --os-cloud the cloud reads its "
                      "own.[/]", highlight=False)
        raise typer.Exit(2)
    missing = [str(path) for path in log or [] if not path.is_file()]
    if missing:
        console.print(f"[red]No log file {', '.join(missing)}.[/]", highlight=False)
        raise typer.Exit(2)
    logs = [settings.data_dir / LOG_FILE, *(log or [])]

    async def run() -> Any:
        db = Database(settings.database_url_for("compute", settings.compute.database_url))
        store = SpanStore(settings.data_dir)
        try:
            return await diagnose(db, store, server, logs)
        finally:
            store.close()
            await db.dispose()

    if os_cloud:
        from urllib.parse import quote

        from stratus.cli.cloud import CloudError, cloud_config, get_json

        route = f"/os-stratus-why/{quote(server, safe='')}"
        try:
            document = asyncio.run(get_json(cloud_config(os_cloud, settings.data_dir),
                                            "compute", route))["why"]
        except CloudError as exc:
            console.print(f"[red]{os_cloud}: {exc}[/]", highlight=False)
            raise typer.Exit(1) from None
        diagnosis = Diagnosis.from_json(document)
    else:
        try:
            diagnosis = asyncio.run(run())
        except NotFound as exc:
            console.print(f"[red]{exc}[/]", highlight=False)
            raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(diagnosis.as_json(), indent=2))
        return
    for line in diagnosis.lines():
        print(line)


@app.command()
def bootstrap(data_dir: DataDir = None, host: Host = None, port: Port = None) -> None:
    """Create the Default domain, admin project and user, roles and the catalog; idempotent."""
    from stratus.stack import Stack, write_clouds_yaml
    from stratus.stack import admin_password as password_of
    from stratus.units import run_bootstrap

    settings = _settings(data_dir, host, port)

    async def run() -> None:
        stack = Stack(settings)
        try:
            await run_bootstrap(stack)
        finally:
            await stack.aclose()

    asyncio.run(run())
    clouds = write_clouds_yaml(settings, password_of(settings))
    console.print(f"Bootstrapped. Credentials for the cloud 'stratus' are in {clouds}")


@app.command()
def doctor(packages: Annotated[bool, typer.Option(
               "--packages", help="Print only the Debian packages that add what is missing "
                                  "(for make deps).")] = False) -> None:
    """Check this machine for every optional part (QEMU/KVM, libvirt, dnsmasq, qemu-img, nft,
    bridges and namespaces, the configured PostgreSQL and RabbitMQ, Ceph, memcached) and say
    how to add what is missing."""
    from stratus.cli.doctor import missing_packages, report_lines, run_checks

    setup_logging("WARNING", console_level=logging.CRITICAL)
    checks = asyncio.run(run_checks(Settings()))
    if packages:
        print(" ".join(missing_packages(checks)))
        return
    for line in report_lines(checks):
        console.print(line, markup=False, highlight=False)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Bring every service's database schema up to date."""
    from stratus.core.db import Database
    from stratus.schemas import all_schemas

    settings = _settings(data_dir)
    overrides = {"identity": settings.identity.database_url,
                 "image": settings.image.database_url,
                 "compute": settings.compute.database_url,
                 "network": settings.network.database_url,
                 "volume": settings.volume.database_url}

    async def run() -> None:
        for schema in all_schemas():
            db = Database(settings.database_url_for(schema.service, overrides[schema.service]))
            try:
                revision = await schema.upgrade(db)
            finally:
                await db.dispose()
            console.print(f"{schema.service}: at revision {revision}")

    asyncio.run(run())


@identity_app.command("rotate-keys")
def rotate_keys(data_dir: DataDir = None) -> None:
    """Rotate the Fernet keys: promote the staged key, stage a new one, prune the oldest."""
    from stratus.identity.fernet import KeyRepository

    settings = _settings(data_dir)
    repo = KeyRepository(settings.key_repository, settings.identity.max_active_keys)
    repo.initialize()
    primary = repo.rotate()
    keys = sorted(int(p.name) for p in settings.key_repository.iterdir() if p.name.isdigit())
    console.print(f"Primary key is now {primary}; keys on disk: {keys}")


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
