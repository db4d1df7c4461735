"""How the parent and the enclave talk: length-prefixed JSON messages over a stream.

The stream is an interface: AF_VSOCK between the parent instance and its enclave (the only
channel an enclave has), a socket pair in the tests. Both sides import only this module and
the standard library, so the parent never loads the enclave's key code.

A message is a 4-byte big-endian length and that many bytes of UTF-8 JSON, an object with an
`op` (request) or `ok` (answer). Binary values (ciphertexts, credentials) are base64.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol

from ml.enclave import contract

MAX_MESSAGE_BYTES: Final = 1024 * 1024
_LENGTH: Final = struct.Struct(">I")
# Python exposes AF_VSOCK on Linux only; the tests run the same code over socket pairs.
AF_VSOCK: Final = getattr(socket, "AF_VSOCK", 40)

Message = dict[str, Any]


class ProtocolError(ConnectionError):
    """The peer sent something that is not a message of this protocol, or went away."""


class Channel(Protocol):
    def send(self, message: Message) -> None: ...
    def receive(self) -> Message: ...
    def close(self) -> None: ...


class Transport(Protocol):
    """Opens a channel to the enclave (the parent's side)."""

    def connect(self) -> Channel: ...


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ProtocolError("expected base64 text") from None


class SocketChannel:
    """A channel over any connected stream socket (vsock, a socket pair)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, message: Message) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        if len(body) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
        self.sock.sendall(_LENGTH.pack(len(body)) + body)

    def _exactly(self, count: int) -> bytes:
        chunks: list[bytes] = []
        while count:
            chunk = self.sock.recv(min(count, 65536))
            if not chunk:
                raise ProtocolError("the peer closed the channel")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> Message:
        (length,) = _LENGTH.unpack(self._exactly(_LENGTH.size))
        if length > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            message = json.loads(self._exactly(length))
        except ValueError:
            raise ProtocolError("not a JSON message") from None
        if not isinstance(message, dict):
            raise ProtocolError("a message is a JSON object")
        return message

    def close(self) -> None:
        self.sock.close()


class VsockTransport:
    """The parent's way to its enclave: AF_VSOCK to the enclave's fixed CID."""

    def __init__(self, cid: int = contract.ENCLAVE_CID, port: int = contract.ENCLAVE_PORT) -> None:
        self.address = (cid, port)

    def connect(self) -> Channel:
        sock = socket.socket(AF_VSOCK, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(self.address)
        return SocketChannel(sock)


class RemoteError(RuntimeError):
    """The enclave refused a request; its message names the rule, never a value."""


def call(transport: Transport, request: Message) -> Message:
    """One request, one answer, on a fresh channel. An answer of `ok: false` is raised."""
    channel = transport.connect()
    try:
        channel.send(request)
        answer = channel.receive()
    finally:
        channel.close()
    if answer.get("ok") is not True:
        raise RemoteError(str(answer.get("error", "the enclave refused the request")))
    return answer


def serve_channel(channel: Channel, handle: Callable[[Message], Message]) -> None:
    """Answer one request on a channel (the enclave's side), then close it."""
    try:
        channel.send(handle(channel.receive()))
    except ProtocolError:
        pass
    finally:
        channel.close()


def serve_vsock(
    handle: Callable[[Message], Message], port: int = contract.ENCLAVE_PORT
) -> None:  # pragma: no cover - needs a vsock device
    """The enclave's listener: any CID may connect, and only the parent can reach an enclave."""
    listener = socket.socket(AF_VSOCK, socket.SOCK_STREAM)
    listener.bind((socket.VMADDR_CID_ANY, port))
    listener.listen()
    while True:
        connection, _ = listener.accept()
        threading.Thread(
            target=serve_channel, args=(SocketChannel(connection), handle), daemon=True
        ).start()


def forward_tcp_to_vsock(
    listen: tuple[str, int] = ("127.0.0.1", contract.HTTPS_PORT),
    target: tuple[int, int] = (contract.PARENT_CID, contract.KMS_PROXY_PORT),
) -> None:  # pragma: no cover - needs a vsock device
    """Inside the enclave: TCP on loopback to the parent's vsock-proxy, byte for byte.

    boto3 connects to https://kms.<region>.amazonaws.com, which the enclave's /etc/hosts
    points at loopback; TLS runs from here to KMS itself, so neither this forwarder nor the
    parent's proxy sees the request or the answer in clear.
    """
    listener = socket.create_server(listen)
    while True:
        inbound, _ = listener.accept()
        outbound = socket.socket(AF_VSOCK, socket.SOCK_STREAM)
        outbound.connect(target)
        for source, sink in ((inbound, outbound), (outbound, inbound)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:  # pragma: no cover
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
