"""Where meerkat's pages listen (TensorBoard, the sorting page): the address checked before any
work, and the URL a person opens."""

import re
import socket

from meerkat.core.errors import MeerkatError, UsageError

WILDCARDS = ("0.0.0.0", "::", "")
# Host names and IPv4 or IPv6 literals (with a %zone); anything else is no address to look up.
HOST = re.compile(r"[A-Za-z0-9.:%_-]*")


def display_url(host: str, port: int) -> str:
    """The URL to open: a wildcard address is reached as localhost (or the published port)."""
    shown = "localhost" if host in WILDCARDS else host
    if ":" in shown:  # an IPv6 literal
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def check_port(host: str, port: int, what: str) -> None:
    """Fail in one line, before a server loads (TensorBoard takes seconds), when host:port cannot be listened on."""
    if not 0 <= port <= 0xFFFF:
        raise UsageError(f"--port must be in 0..65535 (0: any free one), received {port}")
    if not HOST.fullmatch(host):
        raise UsageError(f"--host must be an IP address or a host name, such as 0.0.0.0; received {host!r}")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except (OSError, UnicodeError) as e:  # UnicodeError: a name IDNA cannot encode (a label over 63 letters)
        raise MeerkatError(
            f"{what} cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}; pick another "
            "--port or --host (or stop what uses the port)"
        ) from None
