"""The enclave's attestation document, from the Nitro Secure Module (/dev/nsm).

The document is a COSE_Sign1 structure signed by the Nitro hypervisor's PKI; it carries the
enclave's PCRs (PCR0 is the image measurement) and the public key the enclave asks it to hold.
KMS verifies the signature, compares PCR0 with the key policy's
kms:RecipientAttestation:ImageSha384, and encrypts its answer to that public key. The enclave
never parses the document itself: it only asks for one and hands it to KMS.

The NSM speaks CBOR through one ioctl; the small codec below is enough for its messages
(`{"Attestation": {"public_key": ..., "user_data": null, "nonce": null}}` out,
`{"Attestation": {"document": ...}}` back).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from typing import Final, Protocol

NSM_DEVICE: Final = "/dev/nsm"
# _IOWR(0x0A, 0, struct nsm_message): two iovecs, 32 bytes on a 64-bit kernel.
_IOC_READ_WRITE: Final = 3
NSM_IOCTL_REQUEST: Final = (_IOC_READ_WRITE << 30) | (32 << 16) | (0x0A << 8) | 0
NSM_RESPONSE_MAX_BYTES: Final = 0x3000

CborValue = None | bool | int | bytes | str | list["CborValue"] | dict[str, "CborValue"]


class AttestationError(RuntimeError):
    """The secure module gave no attestation document."""


class Attestor(Protocol):
    def attestation_document(self, public_key_der: bytes) -> bytes:
        """A signed attestation document holding `public_key_der` (SubjectPublicKeyInfo)."""
        ...


# --- a minimal CBOR codec (RFC 8949, definite lengths) ----------------------------------------


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def cbor_encode(value: CborValue) -> bytes:  # noqa: PLR0911 - one return per type
    if value is None:
        return b"\xf6"
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        encoded = value.encode()
        return _head(3, len(encoded)) + encoded
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(cbor_encode(item) for item in value)
    return _head(5, len(value)) + b"".join(
        cbor_encode(key) + cbor_encode(item) for key, item in value.items()
    )


def cbor_decode(data: bytes) -> CborValue:
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after the CBOR value")
    return value


def _decode_at(data: bytes, at: int) -> tuple[CborValue, int]:  # noqa: PLR0911, PLR0912
    if at >= len(data):
        raise ValueError("truncated CBOR")
    major, info = data[at] >> 5, data[at] & 0x1F
    at += 1
    if major == 7:
        simple = {20: False, 21: True, 22: None, 23: None}
        if info in simple:
            return simple[info], at
        raise ValueError("unsupported CBOR simple value or float")
    if info < 24:
        argument = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        if at + size > len(data):
            raise ValueError("truncated CBOR")
        argument = int.from_bytes(data[at : at + size], "big")
        at += size
    else:
        raise ValueError("indefinite-length CBOR is not used by the secure module")
    if major == 0:
        return argument, at
    if major == 1:
        return -1 - argument, at
    if major in (2, 3):
        if at + argument > len(data):
            raise ValueError("truncated CBOR")
        raw = data[at : at + argument]
        return (raw if major == 2 else raw.decode()), at + argument
    if major == 4:
        items: list[CborValue] = []
        for _ in range(argument):
            item, at = _decode_at(data, at)
            items.append(item)
        return items, at
    if major == 5:
        mapping: dict[str, CborValue] = {}
        for _ in range(argument):
            key, at = _decode_at(data, at)
            item, at = _decode_at(data, at)
            mapping[str(key)] = item
        return mapping, at
    # Major type 6: a tag; the tagged value is what matters here.
    return _decode_at(data, at)


def attestation_request(public_key_der: bytes) -> bytes:
    return cbor_encode(
        {"Attestation": {"user_data": None, "nonce": None, "public_key": public_key_der}}
    )


def attestation_document_from(response: bytes) -> bytes:
    decoded = cbor_decode(response)
    if isinstance(decoded, dict):
        answer = decoded.get("Attestation")
        if isinstance(answer, dict) and isinstance(answer.get("document"), bytes):
            document = answer["document"]
            assert isinstance(document, bytes)
            return document
        if "Error" in decoded:
            raise AttestationError(f"the secure module answered {decoded['Error']!r}")
    raise AttestationError("the secure module's answer holds no attestation document")


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _NsmMessage(ctypes.Structure):
    _fields_ = [("request", _IoVec), ("response", _IoVec)]


class NsmAttestor:
    """The real secure module: one ioctl on /dev/nsm per document."""

    def __init__(self, device: str = NSM_DEVICE) -> None:
        self.device = device

    def attestation_document(
        self, public_key_der: bytes
    ) -> bytes:  # pragma: no cover - needs an enclave
        request = attestation_request(public_key_der)
        request_buffer = ctypes.create_string_buffer(request, len(request))
        response_buffer = ctypes.create_string_buffer(NSM_RESPONSE_MAX_BYTES)
        message = _NsmMessage(
            _IoVec(ctypes.addressof(request_buffer), len(request)),
            _IoVec(ctypes.addressof(response_buffer), NSM_RESPONSE_MAX_BYTES),
        )
        descriptor = os.open(self.device, os.O_RDWR)
        try:
            fcntl.ioctl(descriptor, NSM_IOCTL_REQUEST, message)
        except OSError as problem:
            raise AttestationError(f"the secure module refused: {problem.strerror}") from None
        finally:
            os.close(descriptor)
        return attestation_document_from(response_buffer.raw[: message.response.length])


def _check_iovec_layout() -> None:
    # The ioctl number encodes the message size: 32 bytes on the 64-bit kernels enclaves run.
    if struct.calcsize("P") == 8 and ctypes.sizeof(_NsmMessage) != 32:
        raise AttestationError("unexpected nsm_message layout")


_check_iovec_layout()
