"""Signed bundles (optional): who made a model, not only whether its files match their own hashes.

A bundle's hashes are self-checks: whoever can write the folder can replace the graph and recompute them.
A signed bundle also holds `manifest.sig`, an Ed25519 signature (base64) of its exact manifest.json bytes;
the manifest holds the graph's sha256, so the signature covers the graph too.

    openssl genpkey -algorithm ed25519 -out signing.pem            # the trainer's key, kept secret
    openssl pkey -in signing.pem -pubout -out signing.pub          # what devices trust
    edge-emo export finetuned.safetensors --out m.bundle --sign signing.pem
    edge-emo listen --model m.bundle --trust signing.pub

A device trusts the keys given with `--trust` and every *.pub in $XDG_CONFIG_HOME/edge-emo/trusted/
(~/.config/edge-emo/trusted/). With at least one trusted key, every bundle it loads must carry a valid
signature by one of them (an unsigned or mis-signed bundle is refused); with none, signatures are not read
and `cryptography` (the `sign` extra) is never imported.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

SIGNATURE = "manifest.sig"
# Keys given on the command line (`--trust`) for this process, added to the configured ones.
_given: list[Path] = []


class SignatureError(ValueError):
    """A key cannot be used, or a bundle's signature is missing or wrong where a key is trusted."""


def trusted_folder() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "edge-emo" / "trusted"


def trust(paths: list[Path]) -> None:
    """Trust these public key files for the rest of this process (`--trust`), besides the configured ones."""
    for path in paths:
        if not Path(path).is_file():
            raise SignatureError(f"--trust {path}: no such public key file")
        _read_key(path, private=False)  # a bad key is an error now, not a refused bundle later
    _given.extend(Path(p) for p in paths)


def trusted_key_files() -> list[Path]:
    folder = trusted_folder()
    configured = sorted(folder.glob("*.pub")) if folder.is_dir() else []
    return [*configured, *_given]


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SignatureError(
            "signed bundles need the 'cryptography' package: pip install 'edge-emo[sign]'"
        ) from None
    return serialization, ed25519, InvalidSignature


def _read_key(path: Path, private: bool):
    serialization, ed25519, _ = _crypto()
    kind = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
        key = (
            serialization.load_pem_private_key(data, password=None)
            if private
            else serialization.load_pem_public_key(data)
        )
    except (OSError, ValueError, TypeError) as e:
        raise SignatureError(f"{path}: not a PEM {kind} key edge-emo can read ({e})") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise SignatureError(
            f"{path}: not an Ed25519 {kind} key (make one with `openssl genpkey -algorithm ed25519`)"
        )
    return key


def signer(key_path: Path):
    """A function manifest bytes -> signature file content, with the Ed25519 private key at `key_path`
    (read now, so a bad key fails before any work)."""
    key = _read_key(key_path, private=True)
    return lambda manifest: base64.b64encode(key.sign(manifest)) + b"\n"


def verify(bundle: Path, manifest: bytes) -> None:
    """If any key is trusted: SignatureError unless `bundle`/manifest.sig is a valid signature of
    `manifest` (the bytes read) by one of them. Without trusted keys: nothing (no import)."""
    keys = trusted_key_files()
    if not keys:
        return
    _, _, invalid = _crypto()
    path = Path(bundle) / SIGNATURE
    if not path.is_file():
        raise SignatureError(f"{bundle}: unsigned bundle, refused: a trusted key is configured ({keys[0]})")
    try:
        signature = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (OSError, binascii.Error) as e:
        raise SignatureError(f"{path}: unreadable signature ({e})") from None
    for key in keys:
        try:
            _read_key(key, private=False).verify(signature, manifest)
            return
        except invalid:
            continue
    names = ", ".join(str(k) for k in keys)
    raise SignatureError(
        f"{bundle}: signature does not match the manifest under any trusted key ({names}): refused"
    )
