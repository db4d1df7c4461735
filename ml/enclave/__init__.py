"""Patient tokens: identifiers become tokens before inference, and only a measured Nitro Enclave
turns tokens back into identifiers.

Who holds what:
- the enclave (ml/enclave/app.py) holds the data key in clear, in its own memory, and nothing
  else ever does: it obtains it from KMS with its attestation document (kms:Decrypt with the
  `Recipient` parameter), which KMS admits only for the image measurement in the patient-token
  key's policy, and KMS returns it encrypted to a key pair the enclave generated and never
  exports (ml/enclave/kms.py, ml/enclave/cms.py);
- the parent (ml/enclave/parent.py) on the host holds the wrapped data key (ciphertext) and the
  host role's credentials, and passes both to the enclave over vsock; it sees identifiers only
  in the clinical caller's request and answer, never a key;
- the SageMaker endpoint sees a token (the InferenceId of each invocation, recorded with the
  captured data, so ground truth can be joined later) and the features, never an identifier.

Tokens (ml/enclave/tokens.py) are AES-SIV (RFC 5297) deterministic authenticated encryption of
the identifier: the same patient always has the same token (records join across requests), a
token decrypts to exactly its identifier (re-identification needs no vault), and a token that
was altered, or made under another key, is refused. The enclave re-identifies only tokens it
issued for the same exchange (ml/enclave/app.py), so a compromised parent learns back only
identifiers it already presented, and cannot use the enclave to re-identify captured data.

The transport is an interface (ml/enclave/protocol.py): AF_VSOCK between host and enclave, a
socket pair in the tests.
"""
