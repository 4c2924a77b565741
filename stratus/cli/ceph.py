"""``stratus ceph up|down|env``: the development cluster of ``core/ceph_dev.py`` from the
command line."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from stratus.cli.options import DataDir, console
from stratus.core.ceph_dev import CephDevError, DevCluster

ceph_app = typer.Typer(help="A single-node Ceph for development and tests (Debian's daemons).",
                       no_args_is_help=True)

CephDir = Annotated[Path | None, typer.Option(
    "--dir", help="The cluster's directory (short: it holds the daemons' sockets) "
                  "[default: $STRATUS_CEPH_DIR or DATA_DIR/ceph].")]


def _cluster(directory: Path | None, data_dir: Path | None) -> DevCluster:
    if directory is None:
        env = os.environ.get("STRATUS_CEPH_DIR")
        if env:
            directory = Path(env)
        else:
            from stratus.core.config import Settings

            overrides: dict[str, Any] = {"data_dir": data_dir.resolve()} if data_dir else {}
            directory = Settings(**overrides).data_dir / "ceph"
    try:
        return DevCluster(directory)
    except CephDevError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from exc


@ceph_app.command("up")
def up(directory: CephDir = None, data_dir: DataDir = None) -> None:
    """Start mon, mgr, one bluestore OSD (sparse file) and radosgw on 127.0.0.1, making the
    cluster on first use (pools images, volumes, vms; client.stratus; an S3 user)."""
    cluster = _cluster(directory, data_dir)
    started = time.monotonic()
    try:
        made = cluster.up()
    except CephDevError as exc:
        console.print(f"[red]Ceph did not start:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"Ceph {'made and started' if made else 'running'} in {cluster.dir} "
                  f"({time.monotonic() - started:.0f} s); `stratus ceph env` prints its "
                  "settings", markup=False, highlight=False)


@ceph_app.command("down")
def down(directory: CephDir = None, data_dir: DataDir = None,
         purge: Annotated[bool, typer.Option(
             "--purge", help="Also remove the cluster's directory (all its data).")
         ] = False) -> None:
    """Stop the cluster's daemons (radosgw, OSD, mgr, mon, in this order)."""
    cluster = _cluster(directory, data_dir)
    stopped = cluster.down(purge=purge)
    console.print(f"Stopped: {', '.join(stopped) or 'nothing was running'}"
                  f"{'; removed ' + str(cluster.dir) if purge else ''}", markup=False,
                  highlight=False)


@ceph_app.command("env")
def env(directory: CephDir = None, data_dir: DataDir = None) -> None:
    """Print the cluster's conf and keyring paths and S3 credentials as shell exports."""
    cluster = _cluster(directory, data_dir)
    if not cluster.exists():
        console.print(f"No cluster in {cluster.dir}: `stratus ceph up` first", markup=False,
                      highlight=False)
        raise typer.Exit(1)
    for name, value in cluster.env().items():
        print(f"export {name}={shlex.quote(value)}")
