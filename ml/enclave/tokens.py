"""Patient tokens: AES-SIV (RFC 5297) of the identifier under the enclave's data key.

Only the enclave imports this module: it is where the data key exists in clear.

Why AES-SIV: it is deterministic (no nonce: one identifier, one token, so a patient's records
join across requests and across hosts), invertible with the key alone (re-identification needs
no lookup table that would itself be a store of identifiers), and authenticated (its synthetic
IV is a MAC over the identifier, so a token altered by one bit, or made under another key, is
refused rather than decrypted into a wrong patient). Deterministic encryption reveals equality
of identifiers, which is exactly the linkage pseudonymisation is meant to keep; nothing else.

A token is `pt1.` and the unpadded base64url of SIV tag and ciphertext. Identifiers are
limited to 28 bytes of printable ASCII (an MRN, a national patient number) so the token fits
the 64 characters of SageMaker's InferenceId, which data capture records with each request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

# AES-256-SIV takes a 512-bit key (two AES-256 keys: S2V's MAC and CTR's cipher).
DATA_KEY_BYTES: Final = 64
TOKEN_PREFIX: Final = "pt1."  # noqa: S105 - a format marker, not a secret
MAX_IDENTIFIER_BYTES: Final = 28
# SageMaker InvokeEndpoint's InferenceId limit.
MAX_TOKEN_CHARACTERS: Final = 64
# Bound into every token: a token of this scheme never decrypts under another use of the key.
ASSOCIATED_DATA: Final = b"phi-ml/patient-token/v1"
_IDENTIFIER: Final = re.compile(rf"^[!-~]{{1,{MAX_IDENTIFIER_BYTES}}}$")
_TOKEN: Final = re.compile(r"^pt1\.[A-Za-z0-9_-]{22,}$")


class TokenError(ValueError):
    """A value is not an identifier this scheme tokenizes, or not a token it issued. The
    message never carries the value (it may be patient data)."""


def _encode(raw: bytes) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise TokenError("not a patient token")
    body = token.removeprefix(TOKEN_PREFIX)
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("not a patient token") from None


class TokenKey:
    """The data key and the two operations on it. Holding an instance is holding the key."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != DATA_KEY_BYTES:
            raise TokenError(f"the data key must be {DATA_KEY_BYTES} bytes")
        self._siv = AESSIV(data_key)
        # A fingerprint to recognise the key in logs and tests without revealing it.
        self.fingerprint = hmac.new(data_key, b"fingerprint", "sha256").hexdigest()[:16]

    def pseudonymize(self, identifier: str) -> str:
        if not isinstance(identifier, str) or not _IDENTIFIER.match(identifier):
            raise TokenError(
                f"a patient identifier is 1 to {MAX_IDENTIFIER_BYTES} printable ASCII "
                "characters without spaces"
            )
        token = _encode(self._siv.encrypt(identifier.encode("ascii"), [ASSOCIATED_DATA]))
        assert len(token) <= MAX_TOKEN_CHARACTERS  # by the identifier limit
        return token

    def reidentify(self, token: str) -> str:
        try:
            plain = self._siv.decrypt(_decode(token), [ASSOCIATED_DATA])
        except InvalidTag:
            raise TokenError("the token was altered or was not issued under this key") from None
        return plain.decode("ascii")
