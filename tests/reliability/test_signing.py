"""Signed bundles: `export --sign` writes an Ed25519 signature of the manifest; with a trusted key (given
with --trust or configured) a device loads only bundles signed by it. A bundle tampered with and its hashes
recomputed passes the self-checks but not the signature. Without a key nothing changes and `cryptography`
is never imported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge_emo.runtime.bundle import GRAPH, MANIFEST, load_bundle, manifest_digest, sha256_bytes
from edge_emo.signing import SIGNATURE
from tests.cli import edge_emo, python
from tests.personalize.conftest import write_happy_wearer

LISTEN = ["listen", "--input", "sample", "--fast", "--json", "--duration", "1"]


def key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def signed(bundles, tmp_path_factory) -> dict[str, Path]:
    """Keys of the trainer and of someone else, and the test checkpoint exported signed and unsigned."""
    root = tmp_path_factory.mktemp("signed")
    private, public = key_pair(root, "trainer")
    other, other_public = key_pair(root, "other")
    ckpt = bundles["int8"].provenance["export"]["checkpoint"]
    edge_emo("export", ckpt, "--out", root / "signed.bundle", "--sign", private, check=True)
    edge_emo("export", ckpt, "--out", root / "other.bundle", "--sign", other, check=True)
    return {
        "root": root,
        "private": private,
        "public": public,
        "other_public": other_public,
        "signed": root / "signed.bundle",
        "other": root / "other.bundle",
        "unsigned": bundles["int8"].path,
    }


def tampered(signed: dict[str, Path], fp32: Path, tmp_path: Path) -> Path:
    """The signed bundle with another graph (the fp32 one) and every hash recomputed: its self-checks pass."""
    path = tmp_path / "tampered.bundle"
    shutil.copytree(signed["signed"], path)
    graph = (fp32 / GRAPH).read_bytes()
    (path / GRAPH).write_bytes(graph)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["precision"] = "fp32"
    manifest.pop("graphs")  # a one-graph fp32 bundle (the int8 bundle's second graph stays unlisted)
    manifest["graph"]["sha256"] = sha256_bytes(graph)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    load_bundle(path)  # no key trusted: it passes every self-check
    return path


def test_a_signed_bundle_loads_with_its_key_and_others_are_refused(signed, bundles, tmp_path):
    assert (signed["signed"] / SIGNATURE).is_file()
    ok = edge_emo(*LISTEN, "--model", signed["signed"], "--trust", signed["public"])
    assert ok.returncode == 0, ok.stderr
    refused = {
        "unsigned bundle, refused": signed["unsigned"],
        "signature does not match": tampered(signed, bundles["fp32"].path, tmp_path),
    }
    refused_other = edge_emo(*LISTEN, "--model", signed["other"], "--trust", signed["public"])
    assert refused_other.returncode == 2 and "signature does not match" in refused_other.stderr
    for says, bundle in refused.items():
        run = edge_emo(*LISTEN, "--model", bundle, "--trust", signed["public"])
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        [line] = run.stderr.strip().splitlines()
        assert line.startswith("error: ") and says in line
    # Without a trusted key, every valid bundle keeps working, the tampered one too (hashes are self-checks).
    for bundle in (signed["unsigned"], signed["other"], tmp_path / "tampered.bundle"):
        edge_emo(*LISTEN, "--model", bundle, check=True)


def test_a_configured_key_applies_to_every_device_command(signed, tmp_path):
    config = tmp_path / "config"
    (config / "edge-emo" / "trusted").mkdir(parents=True)
    shutil.copy(signed["public"], config / "edge-emo" / "trusted" / "trainer.pub")
    env = {"XDG_CONFIG_HOME": str(config)}
    assert edge_emo(*LISTEN, "--model", signed["signed"], env=env).returncode == 0
    run = edge_emo(*LISTEN, "--model", signed["unsigned"], env=env)
    assert run.returncode == 2 and "unsigned bundle, refused" in run.stderr
    wearer = write_happy_wearer(tmp_path / "me", n=5, seconds=0.6)
    run = edge_emo("evaluate", signed["unsigned"], wearer.parent, env=env)
    assert run.returncode == 2 and "unsigned bundle, refused" in run.stderr
    # Personalizing on the device: its own key signs the new bundle, which the device then trusts.
    device_key, device_public = key_pair(tmp_path, "device")
    shutil.copy(device_public, config / "edge-emo" / "trusted" / "device.pub")
    out = tmp_path / "personal.bundle"
    unsigned = edge_emo("personalize", "--model", signed["signed"], "--labels", wearer, "--out", out, env=env)
    assert unsigned.returncode == 2 and "unsigned bundle, refused" in unsigned.stderr and not out.exists()
    edge_emo(
        "personalize",
        "--model",
        signed["signed"],
        "--labels",
        wearer,
        "--out",
        out,
        "--sign",
        device_key,
        env=env,
        check=True,
    )
    assert edge_emo(*LISTEN, "--model", out, env=env).returncode == 0


def test_without_a_key_cryptography_is_never_imported(signed):
    code = (
        "import sys; sys.modules['cryptography'] = None  # as on a device without the sign extra\n"
        "from edge_emo.runtime.bundle import load_bundle\n"
        f"for b in ({str(signed['signed'])!r}, {str(signed['unsigned'])!r}): load_bundle(b)\n"
        "from edge_emo.cli import app\n"
        f"app({[*LISTEN, '--model', str(signed['signed'])]!r})\n"
    )
    run = python(code)
    assert run.returncode == 0, run.stderr
    with_key = python(code.replace("'--model'", f"'--trust', {str(signed['public'])!r}, '--model'"))
    assert with_key.returncode == 2 and "Traceback" not in with_key.stderr
    assert "pip install 'edge-emo[sign]'" in with_key.stderr


def test_bad_keys_are_one_line_errors(signed, tmp_path):
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello\n")
    run = edge_emo("export", signed["unsigned"], "--out", tmp_path / "x.bundle", "--sign", not_a_key)
    assert run.returncode == 2 and "Traceback" not in run.stderr and not (tmp_path / "x.bundle").exists()
    run = edge_emo(*LISTEN, "--trust", tmp_path / "missing.pub")
    assert run.returncode == 2 and "no such public key file" in run.stderr
    run = edge_emo(*LISTEN, "--trust", not_a_key)
    assert run.returncode == 2 and "not a PEM public key" in run.stderr, run.stderr
