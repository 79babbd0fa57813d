"""A software WebAuthn authenticator for tests that do not need a browser.

It answers the ceremonies as a real authenticator does (W3C WebAuthn Level 3, §6): a
P-256 key pair per credential, authenticator data with the SHA-256 of the relying
party's id, "none" attestation, and an ES256 signature over authenticator data and the
hash of the client data. The client data names the origin the "browser" was on, so a
test can play a look-alike site by giving another origin.
"""

import base64
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40  # user present, user verified, attested credential data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(self, kind: str, options: dict, origin: str) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": options["challenge"],
                "origin": origin,
                "crossOrigin": False,
            }
        ).encode()

    def create(self, options: dict, origin: str) -> dict:
        """navigator.credentials.create() for these options, as seen on `origin`."""
        rp_id = options["rp"]["id"]
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([UP | UV | AT])
            + struct.pack(">I", self.sign_count)
            + bytes(16)  # AAGUID: zero, as most platform authenticators send
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options, origin)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {"credProps": {"rk": True}},
            "authenticatorAttachment": "platform",
        }

    def get(self, options: dict, origin: str, *, rp_id: str | None = None) -> dict:
        """navigator.credentials.get() for these options, as seen on `origin`."""
        self.sign_count += 1
        rp_id = rp_id or options["rpId"]
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([UP | UV])
            + struct.pack(">I", self.sign_count)
        )
        client_data = self._client_data("webauthn.get", options, origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": None,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }


ORIGIN = "http://testserver"  # the Django test client's


def add_passkey(client, authenticator=None, *, origin=ORIGIN):
    """Register a passkey through the two ceremony views; (response, authenticator)."""
    from django.urls import reverse

    authenticator = authenticator or SoftAuthenticator()
    begin = client.post(reverse("otp_webauthn:credential-registration-begin"))
    if begin.status_code != 200:
        return begin, authenticator
    answer = authenticator.create(begin.json(), origin)
    complete = client.post(
        reverse("otp_webauthn:credential-registration-complete"),
        data=json.dumps(answer),
        content_type="application/json",
    )
    return complete, authenticator


def use_passkey(client, authenticator, *, origin=ORIGIN, next_url=None, rp_id=None):
    """Verify the second step with the passkey; the complete view's response."""
    from django.urls import reverse

    begin = client.post(reverse("otp_webauthn:credential-authentication-begin"))
    assert begin.status_code == 200, begin.content
    answer = authenticator.get(begin.json(), origin, rp_id=rp_id)
    url = reverse("otp_webauthn:credential-authentication-complete")
    if next_url:
        url += "?next=" + next_url
    return client.post(url, data=json.dumps(answer), content_type="application/json")
