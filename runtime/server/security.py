"""The server's secrets and certificates, read and checked before anything listens.

A token comes from a file or an environment variable, never from the command line (argv is
visible to every user of the machine in `ps`). TLS files are checked by building the same kind of
context the servers will (a bad file is a one-line error here, not a traceback at start-up).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from runtime.errors import DeployError
from runtime.fileio import open_regular
from runtime.server.auth import MAX_SECRET_BYTES

TOKEN_ENV = "ALEXNET_SERVE_TOKEN"
MAX_PEM_BYTES = 1 << 20


def read_token(path: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The token from `path` (its first line), else from $ALEXNET_SERVE_TOKEN; None if neither is set."""
    environ = os.environ if environ is None else environ
    if path is not None:
        text = _read_small(path, MAX_SECRET_BYTES, "token file").decode("utf-8", "replace")
        token = text.splitlines()[0].strip() if text.strip() else ""
        where = path
    elif environ.get(TOKEN_ENV):
        token, where = environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return None
    if len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token):
        raise DeployError(f"{where}: a token is 16 or more printable characters without spaces")
    return token


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: clients must present a certificate this CA signed

    def check(self) -> None:
        """Load the files as the REST server will; DeployError with one line if they do not make a server."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
            if self.client_ca is not None:
                context.load_verify_locations(str(self.client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise DeployError(f"TLS: cannot use --tls-cert {self.cert} with --tls-key {self.key}: {exc}") from None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        cert = _read_small(self.cert, MAX_PEM_BYTES, "certificate")
        key = _read_small(self.key, MAX_PEM_BYTES, "key")
        ca = _read_small(self.client_ca, MAX_PEM_BYTES, "client CA") if self.client_ca else None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def _read_small(path: str | os.PathLike, limit: int, what: str) -> bytes:
    try:
        with open_regular(path) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise DeployError(f"cannot read the {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DeployError(f"the {what} {os.fspath(path)} is over {limit:,} bytes")
    return data


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warnings(host: str, authenticated: bool, tls: bool) -> list[str]:
    """What a listener on `host` lacks, one line each (none on loopback)."""
    if is_loopback(host):
        return []
    warnings = []
    if not authenticated:
        warnings.append(
            f"listening on {host} without authentication: anyone who can reach it can call every API "
            f"(--auth-token-file FILE or ${TOKEN_ENV})"
        )
    if not tls:
        warnings.append(
            f"listening on {host} without TLS: requests, images and tokens cross the network in clear text (--tls-cert/--tls-key)"
        )
    return warnings
