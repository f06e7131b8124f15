from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runner.audit import keys
from runner.audit.keys import PublicKey, Signer, load_signer, load_trusted
from runner.errors import InvalidInput


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_makes_a_private_key_0600_and_a_trusted_pub(tmp_path: Path) -> None:
    said: list[str] = []
    state, root = tmp_path / "state", tmp_path / "repo"
    signer = load_signer(state, root, create=True, say=said.append)
    pem = state / "keys" / f"{signer.name}.pem"
    pub = root / "policies" / "keys" / f"{signer.name}.pub"
    assert _mode(pem) == 0o600 and _mode(state / "keys") == 0o700
    assert pub.read_text() == signer.public.vkey() + "\n"
    assert len(said) == 1 and signer.name in said[0] and "commit the .pub" in said[0]
    again = load_signer(state, root, create=False, say=said.append)
    assert again.public == signer.public and len(said) == 1
    assert signer.public in load_trusted(root / "policies" / "keys")


def test_no_key_without_create_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no signing key") as info:
        load_signer(tmp_path / "state", tmp_path, create=False, say=print)
    assert "runner keys init" in str(info.value)


def test_environment_key_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    local = load_signer(state, tmp_path, create=True, say=lambda _: None)
    ci = Signer.generate()
    monkeypatch.setenv("RUNNER_SIGNING_KEY", ci.pem().decode())
    loaded = load_signer(state, tmp_path, create=True, say=lambda _: None)
    assert loaded.public == ci.public != local.public
    assert loaded.source == "RUNNER_SIGNING_KEY"


@pytest.mark.parametrize("kind", ["garbage", "ec"])
def test_unusable_environment_keys_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "ec":
        value = (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
        message = "not an Ed25519 key"
    else:
        value, message = "not a key", "not a usable PEM private key"
    monkeypatch.setenv("RUNNER_SIGNING_KEY", value)
    with pytest.raises(InvalidInput, match=message):
        load_signer(tmp_path / "state", tmp_path, create=True, say=print)


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    signer = load_signer(state, tmp_path, create=True, say=lambda _: None)
    (state / "keys" / f"{signer.name}.pem").chmod(0o644)
    with pytest.raises(InvalidInput, match="readable by others") as info:
        load_signer(state, tmp_path, create=False, say=print)
    assert "chmod 600" in str(info.value)


def test_key_names_derive_from_the_public_key() -> None:
    signer = Signer.generate()
    again = Signer.from_pem(signer.pem(), "x")
    assert again.name == signer.name and signer.name.startswith("runner-")
    assert len(signer.public.key_hash) == 4


def test_verifier_keys_are_checked(tmp_path: Path) -> None:
    key = Signer.generate().public
    assert PublicKey.from_vkey(key.vkey()) == key
    name, hash_hex, blob = key.vkey().split("+", 2)
    for mangled in (
        f"{name}+{'0' * 8}+{blob}",
        f"other+{hash_hex}+{blob}",
        f"{name}+{hash_hex}+{blob[:-4]}",
        f"{name}+{hash_hex}",
    ):
        with pytest.raises(ValueError):
            PublicKey.from_vkey(mangled)


def test_trusted_keys_accept_pem_and_refuse_junk(tmp_path: Path) -> None:
    signer = Signer.generate()
    directory = tmp_path / "keys"
    directory.mkdir()
    pem = signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "ci.pub").write_bytes(pem)
    trusted = load_trusted(directory)
    assert signer.public in trusted and len(trusted) == 1
    (directory / "junk.pub").write_text("hello\n")
    with pytest.raises(InvalidInput, match=r"junk\.pub"):
        load_trusted(directory)
    assert len(load_trusted(tmp_path / "missing")) == 0


def test_signatures_verify_only_the_signed_message() -> None:
    signer = Signer.generate()
    sig = signer.sign(b"message")
    assert signer.public.verify(sig, b"message")
    assert not signer.public.verify(sig, b"messagE")
    assert not Signer.generate().public.verify(sig, b"message")


def test_retire_deletes_the_old_private_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    signer = load_signer(state, tmp_path, create=True, say=lambda _: None)
    keys.retire(state, signer)
    assert not (state / "keys" / f"{signer.name}.pem").exists()
