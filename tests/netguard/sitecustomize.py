"""Loaded by every Python process the test run starts (through PYTHONPATH): refuse network connections to anything
but this machine, so a notebook that tries to reach a model hub fails loudly instead of passing by luck.

Loopback and Unix sockets stay open because Jupyter kernels talk to their client over them.
"""

import ipaddress
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkBlockedError(ConnectionError):
    pass


def _allowed(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", "", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it would need DNS, i.e. the network


def _guarded_connect(self, address):
    if self.family != getattr(socket, "AF_UNIX", None) and not _allowed(address):
        raise NetworkBlockedError(f"the course must run offline; blocked a connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family != getattr(socket, "AF_UNIX", None) and not _allowed(address):
        raise NetworkBlockedError(f"the course must run offline; blocked a connection to {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
