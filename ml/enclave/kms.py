"""KMS from inside the enclave: every plaintext-bearing call carries the attestation document.

For each call the enclave makes a fresh RSA key pair, asks the secure module for an attestation
document holding its public key, and passes the document as the `Recipient` of the request.
KMS checks the document's signature and measurement against the key policy
(kms:RecipientAttestation:ImageSha384) and answers with `CiphertextForRecipient`, the plaintext
encrypted to that public key, and no `Plaintext`. The private key never leaves this process,
so only this enclave can open the answer; the parent relays TLS bytes it cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ml.enclave.attestation import Attestor
from ml.enclave.cms import open_envelope

KEY_ENCRYPTION_ALGORITHM: Final = "RSAES_OAEP_SHA_256"
RSA_BITS: Final = 2048


class KmsClient(Protocol):
    """The part of boto3's KMS client the enclave uses."""

    def decrypt(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def generate_data_key(self, **kwargs: Any) -> Mapping[str, Any]: ...


class KmsError(RuntimeError):
    """KMS answered without a ciphertext for this enclave."""


class AttestedKms:
    def __init__(self, client: KmsClient, attestor: Attestor) -> None:
        self.client = client
        self.attestor = attestor

    def _recipient(self) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        document = self.attestor.attestation_document(public_der)
        return private_key, {
            "KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM,
            "AttestationDocument": document,
        }

    @staticmethod
    def _open(answer: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> bytes:
        if answer.get("Plaintext"):
            # KMS returns plaintext only when it ignored the Recipient: whatever answered is
            # not the KMS this code was written against, and the key has left the enclave.
            raise KmsError("KMS returned a plaintext: refusing to use it")
        sealed = answer.get("CiphertextForRecipient")
        if not isinstance(sealed, bytes | bytearray) or not sealed:
            raise KmsError("KMS answered without a ciphertext for this enclave")
        return open_envelope(bytes(sealed), private_key)

    def decrypt(self, ciphertext: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        private_key, recipient = self._recipient()
        answer = self.client.decrypt(
            CiphertextBlob=ciphertext,
            KeyId=key_id,
            EncryptionContext=dict(context),
            Recipient=recipient,
        )
        return self._open(answer, private_key)

    def generate_data_key(
        self, key_id: str, number_of_bytes: int, context: Mapping[str, str]
    ) -> tuple[bytes, bytes]:
        """(plaintext, ciphertext blob) of a new data key; the plaintext only ever exists here."""
        private_key, recipient = self._recipient()
        answer = self.client.generate_data_key(
            KeyId=key_id,
            NumberOfBytes=number_of_bytes,
            EncryptionContext=dict(context),
            Recipient=recipient,
        )
        blob = answer.get("CiphertextBlob")
        if not isinstance(blob, bytes | bytearray) or not blob:
            raise KmsError("KMS answered without the wrapped data key")
        return self._open(answer, private_key), bytes(blob)
