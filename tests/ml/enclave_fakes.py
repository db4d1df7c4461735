"""Stand-ins for what an enclave talks to: the secure module (an attestation document naming
a measurement and a public key) and KMS (which decides with the real patient-token key policy
and answers as KMS does, with a CMS envelope addressed to the document's public key)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ml.enclave import cms
from ml.enclave.protocol import Channel, Message, SocketChannel, serve_channel
from modules.keys import IMAGE_SHA384_KEY
from tests.kms_policy import key_policy_allows


class FakeAttestor:
    """Documents that say which image runs; KMS below trusts them as it trusts the NSM's
    signature. `public_keys` records what the enclave asked to be attested."""

    def __init__(self, pcr0: str) -> None:
        self.pcr0 = pcr0
        self.public_keys: list[bytes] = []

    def attestation_document(self, public_key_der: bytes) -> bytes:
        self.public_keys.append(public_key_der)
        return json.dumps({"pcr0": self.pcr0, "public_key": public_key_der.hex()}).encode()


class AccessDeniedError(PermissionError):
    pass


# --- CMS, written the way KMS writes it (BER: indefinite lengths, a chunked ciphertext) -------


def tlv(identifier: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        head = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        head = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return bytes([identifier]) + head + content


def indefinite(identifier: int, *children: bytes) -> bytes:
    return bytes([identifier, 0x80]) + b"".join(children) + b"\x00\x00"


def envelope_for(public_key: rsa.RSAPublicKey, plaintext: bytes, *, chunk: int = 16) -> bytes:
    content_key, iv = os.urandom(32), os.urandom(16)
    padder = symmetric_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    wrapped = public_key.encrypt(
        content_key,
        OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    recipient = tlv(
        0x30,
        tlv(0x02, b"\x02")
        + tlv(0x80, b"\x01" * 20)  # [0] subjectKeyIdentifier
        + tlv(0x30, tlv(0x06, cms.RSAES_OAEP) + tlv(0x30, b""))
        + tlv(0x04, wrapped),
    )
    chunks = [tlv(0x04, ciphertext[i : i + chunk]) for i in range(0, len(ciphertext), chunk)]
    encrypted_content = indefinite(
        0x30,
        tlv(0x06, cms.DATA),
        tlv(0x30, tlv(0x06, cms.AES_256_CBC) + tlv(0x04, iv)),
        indefinite(0xA0, *chunks),
    )
    return indefinite(
        0x30,
        tlv(0x06, cms.ENVELOPED_DATA),
        indefinite(
            0xA0,
            indefinite(0x30, tlv(0x02, b"\x02"), tlv(0x31, recipient), encrypted_content),
        ),
    )


class FakeKms:
    """KMS for one key: keeps wrapped data keys opaque (AES-GCM under its own master key,
    bound to the encryption context) and authorizes each call with the key policy."""

    def __init__(self, key_policy: str, principal: str, key_alias: str) -> None:
        self.key_policy = key_policy
        self.principal = principal
        self.key_alias = key_alias
        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self.issued: list[bytes] = []  # every data key plaintext it ever produced
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.return_plaintext = False

    def _authorize(self, action: str, request: Mapping[str, Any]) -> rsa.RSAPublicKey | None:
        self.calls.append((action, dict(request)))
        if request.get("KeyId") != self.key_alias:
            raise AccessDeniedError("no such key")
        context: dict[str, Any] = {}
        public_key = None
        recipient = request.get("Recipient")
        if recipient is not None:
            document = json.loads(recipient["AttestationDocument"])
            context[IMAGE_SHA384_KEY] = document["pcr0"]
            loaded = serialization.load_der_public_key(bytes.fromhex(document["public_key"]))
            assert isinstance(loaded, rsa.RSAPublicKey)
            public_key = loaded
            assert recipient["KeyEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
        if not key_policy_allows(self.key_policy, self.principal, action, context):
            raise AccessDeniedError(f"{action} denied by the key policy")
        return public_key

    def _answer(self, public_key: rsa.RSAPublicKey | None, plaintext: bytes) -> dict[str, Any]:
        if public_key is None or self.return_plaintext:
            return {"Plaintext": plaintext}
        return {"CiphertextForRecipient": envelope_for(public_key, plaintext)}

    def generate_data_key(self, **request: Any) -> Mapping[str, Any]:
        public_key = self._authorize("kms:GenerateDataKey", request)
        plaintext = os.urandom(request["NumberOfBytes"])
        self.issued.append(plaintext)
        nonce = os.urandom(12)
        aad = json.dumps(request["EncryptionContext"], sort_keys=True).encode()
        blob = nonce + self._master.encrypt(nonce, plaintext, aad)
        return {"CiphertextBlob": blob, **self._answer(public_key, plaintext)}

    def decrypt(self, **request: Any) -> Mapping[str, Any]:
        public_key = self._authorize("kms:Decrypt", request)
        blob = request["CiphertextBlob"]
        aad = json.dumps(request["EncryptionContext"], sort_keys=True).encode()
        plaintext = self._master.decrypt(blob[:12], blob[12:], aad)
        return self._answer(public_key, plaintext)


class RecordingChannel:
    """The parent's end of a socket pair, keeping every message that crossed it."""

    def __init__(self, channel: Channel, log: list[Message]) -> None:
        self.channel, self.log = channel, log

    def send(self, message: Message) -> None:
        self.log.append(message)
        self.channel.send(message)

    def receive(self) -> Message:
        message = self.channel.receive()
        self.log.append(message)
        return message

    def close(self) -> None:
        self.channel.close()


class SocketPairTransport:
    """A fresh socket pair per call, the enclave's side served on a thread: the real framing
    and the real handler, without a vsock device."""

    def __init__(self, handle: Callable[[Message], Message]) -> None:
        self.handle = handle
        self.log: list[Message] = []

    def connect(self) -> Channel:
        parent_end, enclave_end = socket.socketpair()
        threading.Thread(
            target=serve_channel, args=(SocketChannel(enclave_end), self.handle), daemon=True
        ).start()
        return RecordingChannel(SocketChannel(parent_end), self.log)
