"""The sample company's vendor APIs, served locally for a command that loads from them or
asks them to delete someone."""

from __future__ import annotations

import contextlib
import socket

import click

from data_spine.settings import settings


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def local_vendor_apis(port: int, own_process: bool = True):
    """Serve the sample company, from a process of its own unless `own_process` is false (then
    in a thread of this one, whose faults can be set); yields the server and where each
    source finds it and how to sign in (`VendorApisResource` config, or dlt's `SOURCES__*`
    variables for a child process)."""
    from sample_company.generate import read_manifest
    from sample_company.variants import Variant
    from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer
    from sample_company.vendor_api.process import VendorApiProcess

    if not port_free(port):
        raise click.ClickException(
            f"port {port} is in use; set SPINE_VENDOR_API_PORT to a free port or stop the other server"
        )
    sources = settings().sources_dir
    try:
        # The Stripe account's API version is part of how the company was generated.
        stripe_version = Variant.from_manifest(read_manifest(sources)).stripe_api
    except FileNotFoundError:
        stripe_version = Variant().stripe_api
    serving = VendorApiProcess if own_process else VendorApiServer
    with serving(sources, port=port, stripe_api_version=stripe_version) as server:
        vendors = {
            "stripe": {"base_url": server.base_url("stripe"), "api_key": DEMO_CREDENTIALS["stripe_api_key"]},
            "hubspot": {"base_url": server.base_url("hubspot"), "token": DEMO_CREDENTIALS["hubspot_token"]},
            "zendesk": {
                "base_url": server.base_url("zendesk"),
                "email": DEMO_CREDENTIALS["zendesk_email"],
                "api_token": DEMO_CREDENTIALS["zendesk_api_token"],
            },
        }
        click.echo(f"Local vendor APIs at {server.url} (/stripe, /hubspot, /zendesk).")
        yield server, vendors


def dlt_env(vendors: dict[str, dict[str, str]]) -> dict[str, str]:
    """The same endpoints and credentials as dlt reads them from the environment."""
    return {
        f"SOURCES__{source.upper()}__{key.upper()}": value
        for source, values in vendors.items()
        for key, value in values.items()
    }


def vendor_port_option(*aliases: str):
    """--vendor-port (and `aliases`): where the local vendor APIs listen."""
    return click.option(
        "--vendor-port",
        *aliases,
        "port",
        type=click.IntRange(0, 65535),
        default=lambda: settings().vendor_api_port,
        show_default="8765",
        help="Port of the local vendor APIs (env SPINE_VENDOR_API_PORT).",
    )
