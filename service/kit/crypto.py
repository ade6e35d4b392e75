"""Random ids, hashing and the AES-GCM envelope for records at rest in Redis."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token with `nbytes` of entropy from `secrets`."""
    return secrets.token_urlsafe(nbytes)


def digest(value: str) -> str:
    """SHA-256 hex of a secret; what Redis keys and records hold instead of the secret."""
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256 challenge of a verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class Cipher:
    """AES-256-GCM with key rotation: the first key encrypts, every key decrypts.

    Layout: 4-byte key id | 12-byte nonce | ciphertext+tag. The Redis key is the associated data,
    so a record copied under another key does not decrypt.
    """

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one session key is needed")
        self._keys = [(hashlib.sha256(k).digest()[:4], AESGCM(k)) for k in keys]

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        kid, aead = self._keys[0]
        nonce = os.urandom(12)
        return kid + nonce + aead.encrypt(nonce, plaintext, aad.encode())

    def open(self, blob: bytes, aad: str) -> bytes | None:
        """The plaintext, or None when no key opens it (rotated out, tampered, wrong key)."""
        kid, nonce, body = blob[:4], blob[4:16], blob[16:]
        for key_id, aead in self._keys:
            if key_id == kid:
                try:
                    return aead.decrypt(nonce, body, aad.encode())
                except InvalidTag:
                    return None
        return None
