"""Opening KMS's `CiphertextForRecipient`: a CMS EnvelopedData (RFC 5652) addressed to the
enclave's ephemeral RSA key.

KMS encrypts the plaintext (the data key) with a fresh AES-256-CBC content key and wraps that
key with RSAES-OAEP-SHA-256 to the public key of the attestation document; the structure is
BER, with indefinite lengths and the ciphertext as a constructed string of chunks. Only what
that one shape needs is read here, and anything else (another algorithm, another version) is
refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def oid(dotted: str) -> bytes:
    """The DER content octets of an OBJECT IDENTIFIER."""
    first, second, *rest = (int(part) for part in dotted.split("."))
    encoded = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        remaining = arc >> 7
        while remaining:
            chunk.append(0x80 | (remaining & 0x7F))
            remaining >>= 7
        encoded.extend(reversed(chunk))
    return bytes(encoded)


ENVELOPED_DATA: Final = oid("1.2.840.113549.1.7.3")
DATA: Final = oid("1.2.840.113549.1.7.1")
RSAES_OAEP: Final = oid("1.2.840.113549.1.1.7")
AES_256_CBC: Final = oid("2.16.840.1.101.3.4.1.42")

SEQUENCE, SET, INTEGER, OCTET_STRING, OBJECT_IDENTIFIER = 0x10, 0x11, 0x02, 0x04, 0x06
CONTEXT_0: Final = 0  # [0], context-specific, number 0
ENVELOPED_DATA_VERSION: Final = 2
KEY_TRANSPORT_VERSION: Final = 2  # subjectKeyIdentifier: KMS names no certificate


class CmsError(ValueError):
    """Not the EnvelopedData KMS sends to an enclave."""


@dataclass
class Node:
    tag_class: int  # 0 universal, 2 context-specific
    number: int
    constructed: bool
    content: bytes = b""
    children: list[Node] = field(default_factory=list)

    def octets(self) -> bytes:
        """A string's bytes, concatenating the chunks of a constructed (BER) string."""
        if not self.constructed:
            return self.content
        return b"".join(child.octets() for child in self.children)


def _read(data: bytes, at: int) -> tuple[Node, int]:  # noqa: PLR0912
    if at + 2 > len(data):
        raise CmsError("truncated BER")
    identifier = data[at]
    tag_class, constructed, number = identifier >> 6, bool(identifier & 0x20), identifier & 0x1F
    if number == 0x1F:
        raise CmsError("high tag numbers do not occur in this structure")
    at += 1
    first = data[at]
    at += 1
    node = Node(tag_class, number, constructed)
    if first == 0x80:
        if not constructed:
            raise CmsError("indefinite length on a primitive value")
        while True:
            if data[at : at + 2] == b"\x00\x00":
                return node, at + 2
            child, at = _read(data, at)
            node.children.append(child)
    if first & 0x80:
        size = first & 0x7F
        if size == 0 or size > 4 or at + size > len(data):
            raise CmsError("bad BER length")
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    else:
        length = first
    end = at + length
    if end > len(data):
        raise CmsError("truncated BER")
    if constructed:
        while at < end:
            child, at = _read(data, at)
            node.children.append(child)
        if at != end:
            raise CmsError("a constructed value overruns its length")
    else:
        node.content = data[at:end]
    return node, end


def parse(data: bytes) -> Node:
    node, end = _read(data, 0)
    if end != len(data):
        raise CmsError("trailing bytes after the structure")
    return node


def _expect(node: Node, number: int, *, tag_class: int = 0) -> Node:
    if node.tag_class != tag_class or node.number != number:
        raise CmsError(f"unexpected element (class {node.tag_class}, number {node.number})")
    return node


def _integer(node: Node) -> int:
    return int.from_bytes(_expect(node, INTEGER).content, "big", signed=True)


@dataclass(frozen=True)
class Envelope:
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes


def envelope(data: bytes) -> Envelope:
    """The wrapped content key, IV and ciphertext of KMS's EnvelopedData."""
    info = _expect(parse(data), SEQUENCE)
    if len(info.children) != 2 or _expect(info.children[0], OBJECT_IDENTIFIER).content != (
        ENVELOPED_DATA
    ):
        raise CmsError("not a CMS EnvelopedData")
    (enveloped,) = _expect(info.children[1], CONTEXT_0, tag_class=2).children
    parts = [
        child
        for child in _expect(enveloped, SEQUENCE).children
        if not (child.tag_class == 2 and child.number == CONTEXT_0)  # originatorInfo
    ]
    if len(parts) < 3 or _integer(parts[0]) != ENVELOPED_DATA_VERSION:
        raise CmsError("not the EnvelopedData version KMS sends")
    recipients = _expect(parts[1], SET).children
    if len(recipients) != 1:
        raise CmsError("expected exactly one recipient")
    recipient = _expect(recipients[0], SEQUENCE).children
    if len(recipient) != 4 or _integer(recipient[0]) != KEY_TRANSPORT_VERSION:
        raise CmsError("not a key-transport recipient named by key identifier")
    algorithm = _expect(recipient[2], SEQUENCE).children
    if _expect(algorithm[0], OBJECT_IDENTIFIER).content != RSAES_OAEP:
        raise CmsError("the content key is not wrapped with RSAES-OAEP")
    encrypted_key = _expect(recipient[3], OCTET_STRING).octets()
    content = _expect(parts[2], SEQUENCE).children
    if len(content) != 3 or _expect(content[0], OBJECT_IDENTIFIER).content != DATA:
        raise CmsError("the encrypted content is not of type data")
    cipher = _expect(content[1], SEQUENCE).children
    if _expect(cipher[0], OBJECT_IDENTIFIER).content != AES_256_CBC or len(cipher) != 2:
        raise CmsError("the content is not encrypted with AES-256-CBC")
    iv = _expect(cipher[1], OCTET_STRING).octets()
    ciphertext = _expect(content[2], CONTEXT_0, tag_class=2).octets()
    if len(iv) != 16 or not ciphertext or len(ciphertext) % 16:
        raise CmsError("bad IV or ciphertext length")
    return Envelope(encrypted_key, iv, ciphertext)


def open_envelope(data: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    """The plaintext KMS addressed to `private_key`'s public half."""
    sealed = envelope(data)
    content_key = private_key.decrypt(
        sealed.encrypted_key,
        OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    if len(content_key) != 32:
        raise CmsError("the content key is not an AES-256 key")
    decryptor = Cipher(algorithms.AES(content_key), modes.CBC(sealed.iv)).decryptor()
    padded = decryptor.update(sealed.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CmsError("bad padding: the envelope was not addressed to this key") from None
