"""The patient-token enclave in-process: tokens are deterministic and invert, altered tokens are
refused, the enclave obtains its data key only as the measured image (KMS deciding with the
real key policy), re-identifies only what it issued for the same exchange, and the parent
never holds a key. The transport is a socket pair; the image, its measurement record and the
parent archive are held to their contracts without nitro-cli or Docker."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import botocore
import botocore.session
import cryptography
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ml.enclave import attestation, cms, contract, measure, parent, protocol, tokens
from ml.enclave.app import TICKET_SECONDS, EnclaveApp
from ml.enclave.kms import KEY_ENCRYPTION_ALGORITHM, AttestedKms
from ml.enclave.parent import EnclaveClient, SageMakerEndpoint, TokenGateway
from ml.enclave.protocol import RemoteError, SocketChannel
from modules.keys import EnclaveKeyConfig, KeyPurpose, enclave_key_policy
from tests import dockerfiles
from tests.ml.enclave_fakes import FakeAttestor, FakeKms, SocketPairTransport, envelope_for

PCR0 = "c3" * 48
OTHER_PCR0 = "d4" * 48
ACCOUNT = "123456789012"
REGION = "eu-west-1"
HOST_ROLE = f"arn:aws:iam::{ACCOUNT}:role/phi-ml-unit-readmission-enclave"
KEY_ALIAS = f"arn:aws:kms:{REGION}:{ACCOUNT}:{contract.patient_token_key_alias('unit')}"
CREDENTIALS = {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret", "Token": "session"}
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "enclave"
DOCKERFILE = dockerfiles.REPO / "ml" / "Dockerfile.enclave"


def key_policy() -> str:
    return enclave_key_policy(
        EnclaveKeyConfig(
            purpose=KeyPurpose.PATIENT_TOKENS,
            alias=contract.patient_token_key_alias("unit"),
            account_id=ACCOUNT,
            region=REGION,
            administrators=(f"arn:aws:iam::{ACCOUNT}:role/key-admin",),
            enclave_role=HOST_ROLE,
            image_sha384=PCR0,
        )
    )


# --- tokens ---------------------------------------------------------------------------------


@pytest.fixture
def key() -> tokens.TokenKey:
    return tokens.TokenKey(bytes(range(64)))


def test_pseudonymize_is_deterministic(key: tokens.TokenKey) -> None:
    again = tokens.TokenKey(bytes(range(64)))
    assert key.pseudonymize("MRN00012345") == key.pseudonymize("MRN00012345")
    assert again.pseudonymize("MRN00012345") == key.pseudonymize("MRN00012345")


def test_different_patients_have_different_tokens(key: tokens.TokenKey) -> None:
    assert key.pseudonymize("MRN00012345") != key.pseudonymize("MRN00012346")


def test_another_key_gives_other_tokens(key: tokens.TokenKey) -> None:
    other = tokens.TokenKey(bytes(reversed(range(64))))
    assert other.pseudonymize("MRN00012345") != key.pseudonymize("MRN00012345")


def test_reidentify_inverts_pseudonymize(key: tokens.TokenKey) -> None:
    for identifier in ("MRN00012345", "x", "!" * tokens.MAX_IDENTIFIER_BYTES):
        token = key.pseudonymize(identifier)
        assert len(identifier) < 8 or identifier not in token  # a short one may occur by chance
        assert key.reidentify(token) == identifier


def test_tokens_fit_sagemakers_inference_id(key: tokens.TokenKey) -> None:
    longest = key.pseudonymize("9" * tokens.MAX_IDENTIFIER_BYTES)
    assert len(longest) <= tokens.MAX_TOKEN_CHARACTERS
    assert longest.startswith(tokens.TOKEN_PREFIX)


def flip(token: str, position: int) -> str:
    body = bytearray(base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4)))
    body[position] ^= 0x01
    return tokens.TOKEN_PREFIX + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()


@pytest.mark.parametrize("position", [0, 15, 16, -1])
def test_a_tampered_token_is_refused(key: tokens.TokenKey, position: int) -> None:
    """Any bit of tag or ciphertext: AES-SIV authenticates the whole token."""
    token = key.pseudonymize("MRN00012345")
    with pytest.raises(tokens.TokenError, match="altered or was not issued"):
        key.reidentify(flip(token, position))


def test_a_token_of_another_key_is_refused(key: tokens.TokenKey) -> None:
    foreign = tokens.TokenKey(b"\x07" * 64).pseudonymize("MRN00012345")
    with pytest.raises(tokens.TokenError):
        key.reidentify(foreign)


@pytest.mark.parametrize("token", ["", "MRN00012345", "pt1.", "pt1.!!!!", "pt2." + "A" * 30])
def test_what_is_not_a_token_is_refused(key: tokens.TokenKey, token: str) -> None:
    with pytest.raises(tokens.TokenError, match="not a patient token"):
        key.reidentify(token)


@pytest.mark.parametrize(
    "identifier", ["", "has space", "9" * (tokens.MAX_IDENTIFIER_BYTES + 1), "naïve"]
)
def test_identifiers_outside_the_scheme_are_refused(key: tokens.TokenKey, identifier: str) -> None:
    with pytest.raises(tokens.TokenError) as refused:
        key.pseudonymize(identifier)
    assert not identifier or identifier not in str(refused.value)  # no value in the message


def test_the_data_key_must_be_512_bits() -> None:
    with pytest.raises(tokens.TokenError, match="64 bytes"):
        tokens.TokenKey(b"\x00" * 32)


# --- CMS: opening KMS's envelope --------------------------------------------------------------


@pytest.fixture(scope="module")
def recipient_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_an_envelope_written_like_kms_opens(recipient_key: rsa.RSAPrivateKey) -> None:
    plaintext = os.urandom(64)
    sealed = envelope_for(recipient_key.public_key(), plaintext, chunk=7)
    assert cms.open_envelope(sealed, recipient_key) == plaintext


def test_an_envelope_for_another_key_does_not_open(recipient_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sealed = envelope_for(other.public_key(), os.urandom(64))
    with pytest.raises(ValueError, match=r"Decryption failed|not addressed"):
        cms.open_envelope(sealed, recipient_key)


def test_another_content_cipher_is_refused(recipient_key: rsa.RSAPrivateKey) -> None:
    sealed = envelope_for(recipient_key.public_key(), os.urandom(64))
    aes_128_cbc = cms.oid("2.16.840.1.101.3.4.1.2")
    assert len(aes_128_cbc) == len(cms.AES_256_CBC)
    with pytest.raises(cms.CmsError, match="AES-256-CBC"):
        cms.open_envelope(sealed.replace(cms.AES_256_CBC, aes_128_cbc), recipient_key)


def test_truncated_ber_is_refused(recipient_key: rsa.RSAPrivateKey) -> None:
    sealed = envelope_for(recipient_key.public_key(), os.urandom(64))
    with pytest.raises(cms.CmsError):
        cms.envelope(sealed[:-5])


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="needs openssl")
def test_an_envelope_from_openssl_opens(tmp_path: Path, recipient_key: rsa.RSAPrivateKey) -> None:
    """An independent writer of the same shape (streamed BER, key identifier, RSA-OAEP with
    SHA-256, AES-256-CBC): the parser follows the standard, not only our own fake."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "enclave")])
    public = recipient_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(1)
        .not_valid_before(datetime.datetime(2024, 1, 1))
        .not_valid_after(datetime.datetime(2099, 1, 1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(recipient_key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    plaintext = os.urandom(64)
    (tmp_path / "plain").write_bytes(plaintext)
    subprocess.run(
        [
            "/usr/bin/openssl", "cms", "-encrypt", "-binary", "-stream", "-outform", "DER",
            "-aes-256-cbc", "-keyid", "-in", str(tmp_path / "plain"),
            "-out", str(tmp_path / "sealed"), "-recip", str(tmp_path / "cert.pem"),
            "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
            "-keyopt", "rsa_mgf1_md:sha256",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert cms.open_envelope((tmp_path / "sealed").read_bytes(), recipient_key) == plaintext


# --- the attestation request ------------------------------------------------------------------


def test_the_nsm_request_is_the_cbor_the_module_expects() -> None:
    request = attestation.attestation_request(b"\x01\x02")
    assert attestation.cbor_decode(request) == {
        "Attestation": {"user_data": None, "nonce": None, "public_key": b"\x01\x02"}
    }
    # Map of one text key "Attestation" (0xa1, 0x6b...), as serde_cbor writes the enum.
    assert request.startswith(b"\xa1\x6bAttestation\xa3")


def test_the_document_is_read_from_the_modules_answer() -> None:
    answer = attestation.cbor_encode({"Attestation": {"document": b"COSE"}})
    assert attestation.attestation_document_from(answer) == b"COSE"


def test_an_error_answer_is_no_document() -> None:
    """Twin of the one above."""
    answer = attestation.cbor_encode({"Error": "InvalidArgument"})
    with pytest.raises(attestation.AttestationError, match="InvalidArgument"):
        attestation.attestation_document_from(answer)


def test_the_ioctl_is_nsms() -> None:
    """_IOWR(0x0A, 0, 32 bytes), the number the NSM driver registers."""
    assert attestation.NSM_IOCTL_REQUEST == 0xC0200A00


# --- the enclave obtains its key only as the measured image -----------------------------------


FACTORY_CALLS: list[tuple[str, dict[str, str]]] = []


def enclave(
    pcr0: str = PCR0, kms: FakeKms | None = None, clock: Any = None
) -> tuple[EnclaveApp, FakeKms, FakeAttestor]:
    """An enclave running the image of measurement `pcr0`, talking to `kms` (a new one, for
    one key, unless given: several enclaves share a KMS as hosts of one environment do)."""
    used = kms or FakeKms(key_policy(), HOST_ROLE, KEY_ALIAS)
    attestor = FakeAttestor(pcr0)

    def client_factory(region: str, credentials: Any) -> FakeKms:
        FACTORY_CALLS.append((region, dict(credentials)))
        return used

    if clock is None:
        return EnclaveApp(attestor, client_factory), used, attestor
    return EnclaveApp(attestor, client_factory, clock), used, attestor


@pytest.fixture
def minted() -> tuple[EnclaveApp, FakeKms, bytes]:
    """An enclave that minted the environment's data key (and so holds it)."""
    app, kms, _ = enclave()
    client = EnclaveClient(SocketPairTransport(app.handle))
    wrapped = client.mint_data_key(CREDENTIALS, KEY_ALIAS)
    return app, kms, wrapped


def test_the_measured_enclave_mints_and_unlocks(minted: tuple[EnclaveApp, FakeKms, bytes]) -> None:
    _, kms, wrapped = minted
    fresh, _, _ = enclave(kms=kms)  # another host's enclave of the same image, the same key
    client = EnclaveClient(SocketPairTransport(fresh.handle))
    client.unlock(CREDENTIALS, KEY_ALIAS, wrapped)
    _, from_fresh = client.pseudonymize(["MRN00012345"])
    minter = EnclaveClient(SocketPairTransport(minted[0].handle))
    _, from_minter = minter.pseudonymize(["MRN00012345"])
    assert from_fresh == from_minter  # one data key: hosts agree on tokens
    # Every call carried an attestation document, and KMS never answered in clear.
    assert all("Recipient" in request for _, request in kms.calls)


def test_another_image_cannot_unlock(minted: tuple[EnclaveApp, FakeKms, bytes]) -> None:
    _, kms, wrapped = minted
    impostor, _, _ = enclave(OTHER_PCR0, kms=kms)
    client = EnclaveClient(SocketPairTransport(impostor.handle))
    with pytest.raises(RemoteError, match="unlock failed: AccessDeniedError"):
        client.unlock(CREDENTIALS, KEY_ALIAS, wrapped)
    with pytest.raises(RemoteError, match="holds no data key"):
        client.pseudonymize(["MRN00012345"])


def test_without_attestation_kms_gives_the_host_nothing(
    minted: tuple[EnclaveApp, FakeKms, bytes],
) -> None:
    """What the parent could do with the host role's credentials and the wrapped key."""
    _, kms, wrapped = minted
    context = contract.data_key_context("unit")
    with pytest.raises(PermissionError):
        kms.decrypt(CiphertextBlob=wrapped, KeyId=KEY_ALIAS, EncryptionContext=context)
    with pytest.raises(PermissionError):
        kms.generate_data_key(KeyId=KEY_ALIAS, NumberOfBytes=64, EncryptionContext=context)


def test_a_plaintext_answer_is_refused() -> None:
    """Twin: were KMS to ignore the Recipient, the enclave would not use the exposed key."""
    app, kms, _ = enclave()
    kms.return_plaintext = True
    client = EnclaveClient(SocketPairTransport(app.handle))
    with pytest.raises(RemoteError, match="KMS returned a plaintext"):
        client.mint_data_key(CREDENTIALS, KEY_ALIAS)


def test_a_data_key_of_another_environment_does_not_unlock(
    minted: tuple[EnclaveApp, FakeKms, bytes],
) -> None:
    """The encryption context names the environment, taken from the alias."""
    _, kms, wrapped = minted
    app, _, _ = enclave(kms=kms)
    other_alias = KEY_ALIAS.replace("/unit/", "/prod/")
    kms.key_alias = other_alias
    with pytest.raises(RemoteError, match="unlock failed"):
        EnclaveClient(SocketPairTransport(app.handle)).unlock(CREDENTIALS, other_alias, wrapped)


@pytest.mark.parametrize(
    ("request_", "rule"),
    [
        ({"op": "unlock", "key_alias": "alias/other", "credentials": CREDENTIALS}, "key_alias"),
        ({"op": "unlock", "key_alias": KEY_ALIAS, "credentials": {}}, "credentials"),
        ({"op": "erase"}, "unknown operation"),
        ({"op": "pseudonymize", "identifiers": ["MRN1"]}, "holds no data key"),
    ],
)
def test_malformed_requests_are_refused_by_rule(request_: dict[str, Any], rule: str) -> None:
    app, _, _ = enclave()
    answer = app.handle(request_)
    assert answer["ok"] is False
    assert rule in answer["error"]


def test_the_enclave_signs_kms_calls_with_the_credentials_it_is_given() -> None:
    app, _, _ = enclave()
    FACTORY_CALLS.clear()
    EnclaveClient(SocketPairTransport(app.handle)).mint_data_key(CREDENTIALS, KEY_ALIAS)
    assert FACTORY_CALLS == [(REGION, CREDENTIALS)]


def test_each_kms_call_attests_a_fresh_key_pair() -> None:
    app, _, attestor = enclave()
    client = EnclaveClient(SocketPairTransport(app.handle))
    wrapped = client.mint_data_key(CREDENTIALS, KEY_ALIAS)
    client.unlock(CREDENTIALS, KEY_ALIAS, wrapped)
    assert len(attestor.public_keys) == 2
    assert attestor.public_keys[0] != attestor.public_keys[1]


# --- re-identification is bound to the exchange -----------------------------------------------


def test_reidentify_returns_what_was_pseudonymized(
    minted: tuple[EnclaveApp, FakeKms, bytes],
) -> None:
    client = EnclaveClient(SocketPairTransport(minted[0].handle))
    ticket, issued = client.pseudonymize(["MRN00000001", "MRN00000002", "MRN00000001"])
    assert issued[0] == issued[2] != issued[1]
    assert client.reidentify(ticket, list(reversed(issued))) == [
        "MRN00000001",
        "MRN00000002",
        "MRN00000001",
    ]


def test_a_token_of_another_exchange_is_refused(
    minted: tuple[EnclaveApp, FakeKms, bytes],
) -> None:
    client = EnclaveClient(SocketPairTransport(minted[0].handle))
    ticket, _ = client.pseudonymize(["MRN00000001"])
    _, elsewhere = client.pseudonymize(["MRN00000002"])
    with pytest.raises(RemoteError, match="not issued in this exchange"):
        client.reidentify(ticket, elsewhere)


def test_a_ticket_serves_once(minted: tuple[EnclaveApp, FakeKms, bytes]) -> None:
    client = EnclaveClient(SocketPairTransport(minted[0].handle))
    ticket, issued = client.pseudonymize(["MRN00000001"])
    assert client.reidentify(ticket, issued) == ["MRN00000001"]
    with pytest.raises(RemoteError, match="unknown or expired ticket"):
        client.reidentify(ticket, issued)


def test_a_ticket_expires() -> None:
    now = [1000.0]
    app, _, _ = enclave(clock=lambda: now[0])
    client = EnclaveClient(SocketPairTransport(app.handle))
    client.mint_data_key(CREDENTIALS, KEY_ALIAS)
    ticket, issued = client.pseudonymize(["MRN00000001"])
    now[0] += TICKET_SECONDS + 1
    with pytest.raises(RemoteError, match="unknown or expired ticket"):
        client.reidentify(ticket, issued)


def test_a_tampered_token_is_refused_by_the_enclave(
    minted: tuple[EnclaveApp, FakeKms, bytes],
) -> None:
    client = EnclaveClient(SocketPairTransport(minted[0].handle))
    ticket, issued = client.pseudonymize(["MRN00000001"])
    with pytest.raises(RemoteError):
        client.reidentify(ticket, [flip(issued[0], 3)])


# --- the parent: tokens to the endpoint, identifiers back, no key -----------------------------


class RecordingEndpoint:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def score(self, token: str, row: bytes) -> float:
        self.calls.append((token, row))
        return 0.25 + 0.5 * (len(self.calls) % 2)


def gateway_for(app: EnclaveApp) -> tuple[TokenGateway, RecordingEndpoint, SocketPairTransport]:
    transport = SocketPairTransport(app.handle)
    endpoint = RecordingEndpoint()
    return TokenGateway(EnclaveClient(transport), endpoint), endpoint, transport


REQUEST: dict[str, list[dict[str, Any]]] = {
    "records": [
        {"patient_id": "MRN00000001", "features": [67, 1, None, 120.5]},
        {"patient_id": "MRN00000002", "features": [45, 0, 3, 110]},
    ]
}


def test_the_endpoint_sees_only_tokens(minted: tuple[EnclaveApp, FakeKms, bytes]) -> None:
    gateway, endpoint, _ = gateway_for(minted[0])
    answer = gateway.predict(REQUEST)
    assert [p["patient_id"] for p in answer["predictions"]] == ["MRN00000001", "MRN00000002"]
    assert [p["readmission_probability"] for p in answer["predictions"]] == [0.75, 0.25]
    assert [row for _, row in endpoint.calls] == [b"67.0,1.0,,120.5\n", b"45.0,0.0,3.0,110.0\n"]
    for token, row in endpoint.calls:
        assert token.startswith(tokens.TOKEN_PREFIX)
        for record in REQUEST["records"]:
            assert str(record["patient_id"]) not in token
            assert str(record["patient_id"]).encode() not in row


def test_the_detector_would_see_an_identifier_sent_to_the_endpoint() -> None:
    """Twin: a gateway that forwarded identifiers is caught by the same check."""

    class LeakyEnclave:
        def pseudonymize(self, identifiers: list[str]) -> tuple[str, list[str]]:
            return "ticket", list(identifiers)

        def reidentify(self, ticket: str, issued: list[str]) -> list[str]:
            return issued

    endpoint = RecordingEndpoint()
    TokenGateway(LeakyEnclave(), endpoint).predict(REQUEST)  # type: ignore[arg-type]
    assert any(token == "MRN00000001" for token, _ in endpoint.calls)


def test_the_endpoint_is_invoked_with_the_token_as_inference_id() -> None:
    class Runtime:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def invoke_endpoint(self, **call: Any) -> dict[str, Any]:
            self.calls.append(call)

            class Body:
                def read(self) -> bytes:
                    return b"0.42\n"

            return {"Body": Body()}

    runtime = Runtime()
    score = SageMakerEndpoint(runtime, "phi-ml-unit-readmission").score("pt1.abc", b"1.0,2.0\n")
    assert score == 0.42
    assert runtime.calls == [
        {
            "EndpointName": "phi-ml-unit-readmission",
            "ContentType": "text/csv",
            "Accept": "text/csv",
            "Body": b"1.0,2.0\n",
            "InferenceId": "pt1.abc",
        }
    ]


def test_the_parent_never_sees_the_data_key(minted: tuple[EnclaveApp, FakeKms, bytes]) -> None:
    """Every message that crossed the channel, in every encoding the key could take."""
    app, kms, wrapped = minted
    gateway, _, transport = gateway_for(app)
    EnclaveClient(transport).unlock(CREDENTIALS, KEY_ALIAS, wrapped)
    gateway.predict(REQUEST)
    crossed = json.dumps(transport.log)
    (data_key,) = kms.issued
    for encoding in (
        data_key.hex(),
        base64.b64encode(data_key).decode(),
        base64.urlsafe_b64encode(data_key).decode(),
    ):
        assert encoding not in crossed
    assert data_key not in wrapped  # what the parent stores is ciphertext


def test_the_leak_check_would_see_a_key_on_the_channel(
    minted: tuple[EnclaveApp, FakeKms, bytes],
) -> None:
    """Twin: a key that crossed the channel is found by the check above."""
    _, kms, _ = minted
    (data_key,) = kms.issued
    log = [{"ok": True, "key": base64.b64encode(data_key).decode()}]
    assert base64.b64encode(data_key).decode() in json.dumps(log)


def test_the_parent_loads_no_key_code() -> None:
    """In a fresh interpreter: importing the parent brings neither the token scheme, the
    envelope code nor the cryptography package."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ml.enclave.parent; "
            "print(' '.join(m for m in sys.modules if m.startswith(('ml', 'cryptography'))))",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=dockerfiles.REPO,
    ).stdout.split()
    assert "ml.enclave.parent" in loaded
    assert not {"ml.enclave.tokens", "ml.enclave.cms", "ml.enclave.kms", "ml.enclave.app"} & set(
        loaded
    )
    assert not [module for module in loaded if module.startswith("cryptography")]


@pytest.mark.parametrize(
    ("request_", "rule"),
    [
        ({}, "a request is"),
        ({"records": []}, "a request is"),
        ({"records": [{"patient_id": "MRN1"}]}, "exactly patient_id and features"),
        ({"records": [{"patient_id": 7, "features": [1]}]}, "patient_id must be a string"),
        ({"records": [{"patient_id": "MRN1", "features": ["1"]}]}, "numbers or null"),
        ({"records": [{"patient_id": "MRN1", "features": [float("nan")]}]}, "numbers or null"),
        ({"records": [{"patient_id": "has space", "features": [1]}]}, "printable ASCII"),
    ],
)
def test_bad_clinical_requests_are_refused_without_their_values(
    minted: tuple[EnclaveApp, FakeKms, bytes], request_: dict[str, Any], rule: str
) -> None:
    gateway, endpoint, _ = gateway_for(minted[0])
    with pytest.raises(parent.RequestError, match=rule) as refused:
        gateway.predict(request_)
    assert "MRN1" not in str(refused.value)
    assert endpoint.calls == []


# --- the transport ------------------------------------------------------------------------------


def test_messages_cross_a_socket_pair_intact() -> None:
    left, right = socket.socketpair()
    sending, receiving = SocketChannel(left), SocketChannel(right)
    message = {"op": "x", "blob": protocol.b64(os.urandom(70_000))}
    sending.send(message)
    assert receiving.receive() == message
    sending.close()
    with pytest.raises(protocol.ProtocolError, match="closed"):
        receiving.receive()
    receiving.close()


def test_an_oversized_message_is_refused() -> None:
    left, right = socket.socketpair()
    left.sendall((protocol.MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        SocketChannel(right).receive()
    left.close()
    right.close()


def test_the_enclave_answers_over_the_vsock_family_the_parent_uses() -> None:
    """The parent's transport is AF_VSOCK to the enclave's fixed CID and port."""
    transport = protocol.VsockTransport()
    assert transport.address == (contract.ENCLAVE_CID, contract.ENCLAVE_PORT)
    assert getattr(socket, "AF_VSOCK", 40) == protocol.AF_VSOCK


# --- the image, its measurement, the parent archive -------------------------------------------


def test_the_recorded_build_output_yields_pcr0() -> None:
    measured = measure.parse_build_output((FIXTURE / "nitro-cli-build-enclave.txt").read_text())
    assert contract.SHA384_HEX.match(measured.image_sha384)
    assert measured.image_sha384 == measured.pcr0
    assert measured.image_sha384.startswith("633478a41803")
    assert measured.pcr8 is None


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda text: text.split("{", 1)[0], "no Measurements"),
        (lambda text: text.replace("Sha384", "Sha256"), "not SHA-384"),
        (lambda text: text.replace('"PCR0": "633478', '"PCR0": "'), "PCR0 is not a SHA-384"),
        (lambda text: text.replace('"PCR1"', '"PCRX"'), "PCR1 is not a SHA-384"),
    ],
)
def test_output_without_a_usable_measurement_is_refused(change: Any, rule: str) -> None:
    text = (FIXTURE / "nitro-cli-build-enclave.txt").read_text()
    with pytest.raises(measure.MeasurementError, match=rule):
        measure.parse_build_output(change(text))


def test_build_runs_nitro_cli_and_records_the_upload_keys(tmp_path: Path) -> None:
    commands: list[list[str]] = []

    def run(command: list[str]) -> str:
        commands.append(command)
        Path(command[-1]).write_bytes(b"EIF")
        return (FIXTURE / "nitro-cli-build-enclave.txt").read_text()

    eif = tmp_path / "enclave.eif"
    measured = measure.build_enclave("phi-ml-enclave:1", eif, run)
    assert commands == [
        [
            "nitro-cli",
            "build-enclave",
            "--docker-uri",
            "phi-ml-enclave:1",
            "--output-file",
            str(eif),
        ]
    ]
    written = measure.record(measured, eif, "phi-ml-enclave:1")
    assert written["image_sha384"] == measured.pcr0
    assert written["upload"] == {
        "image": contract.image_object(measured.pcr0),
        "parent": contract.parent_archive_object(measured.pcr0),
    }


def test_the_parse_command_prints_pcr0(capsys: pytest.CaptureFixture[str]) -> None:
    assert measure.main(["parse", str(FIXTURE / "nitro-cli-build-enclave.txt")]) == 0
    assert contract.SHA384_HEX.match(capsys.readouterr().out.strip())


def test_the_parent_archive_holds_the_parent_and_no_key_code(tmp_path: Path) -> None:
    archive = measure.build_parent_archive(tmp_path / "parent.pyz")
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
    assert names == {*measure.PARENT_MODULES, "__main__.py"}
    assert not {"ml/enclave/tokens.py", "ml/enclave/cms.py", "ml/enclave/kms.py"} & names
    # It runs on its own (the host's python3): its help, without the repository on the path.
    shown = subprocess.run(
        [sys.executable, str(archive), "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "")},
        check=True,
    )
    assert "--key-alias" in shown.stdout


def test_the_parent_archive_is_reproducible(tmp_path: Path) -> None:
    first = measure.build_parent_archive(tmp_path / "a.pyz").read_bytes()
    assert measure.build_parent_archive(tmp_path / "b.pyz").read_bytes() == first


def test_the_enclave_image_runs_the_enclave_application() -> None:
    assert dockerfiles.entrypoint(DOCKERFILE) == ["python3", "-m", "ml.enclave.app"]
    copied = [
        rest for instruction, rest in dockerfiles.instructions(DOCKERFILE) if instruction == "COPY"
    ]
    assert copied == [
        "ml/__init__.py /opt/program/ml/__init__.py",
        "ml/enclave /opt/program/ml/enclave",
    ]


def test_the_enclave_image_pins_what_the_tests_ran_with() -> None:
    pins = dockerfiles.pip_pins(DOCKERFILE)
    assert set(pins) == {"cryptography", "boto3", "botocore"}
    assert pins == {
        "cryptography": cryptography.__version__,
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
    }
    assert pins["boto3"] == dockerfiles.pyproject_pins()["boto3"]


def test_kms_calls_name_the_recipient_algorithm_kms_supports() -> None:
    assert AttestedKms.__module__ == "ml.enclave.kms"
    shape = (
        botocore.session.get_session()
        .get_service_model("kms")
        .operation_model("Decrypt")
        .input_shape.members["Recipient"]
        .members["KeyEncryptionAlgorithm"]
    )
    assert KEY_ENCRYPTION_ALGORITHM in shape.enum
