"""`runner keys init | rotate`: the Ed25519 key that signs the ledger's checkpoints.
Rotating opens the ledger with the old key, so it is refused (nothing signed) when the
ledger does not extend what runner last signed, or when that key was already retired."""

from __future__ import annotations

from runner.app import App
from runner.audit import anchors, keys
from runner.audit.ledger import Ledger, rotate_key
from runner.errors import InvalidInput


def init(app: App) -> int:
    root, state_dir = app.root, app.state_dir
    signer = keys.env_signer()
    created = False
    if signer is None:
        signer = keys.local_signer(state_dir)
    if signer is None:
        signer = keys.load_signer(state_dir, root, create=True, say=app.out.line)
        created = True
    else:
        public = keys.public_path(root, signer.public)
        if not public.exists():
            keys.write_public(root, signer.public)
            app.out.line(f"trusted the key's public half: wrote {public}")
        app.out.line(f"signing key {signer.public.key_id} already set up ({signer.source})")
    if app.out.json_mode:
        app.out.json(
            {
                "created": created,
                "key_id": signer.public.key_id,
                "private": signer.source,
                "public": str(keys.public_path(root, signer.public)),
            }
        )
    return 0


def rotate(app: App) -> int:
    root, state_dir = app.root, app.state_dir
    if keys.env_signer() is not None:
        raise InvalidInput(
            f"the signing key comes from {keys.ENV_VAR}: rotate it where that secret is kept",
            hint="or unset it to rotate the key in .runner/keys/",
        )
    old = keys.local_signer(state_dir)
    if old is None:
        raise InvalidInput("no signing key to rotate", hint="run `runner keys init`")
    with Ledger.open(state_dir, signer=old, repo=root) as ledger:
        new = rotate_key(ledger, state_dir, root, old)
        note = ledger.checkpoint()
    _, warning = anchors.keep(app.anchor_store, note, repo=root, state_dir=state_dir)
    if warning is not None:
        app.out.error(f"runner: warning: {warning}")
    public = keys.public_path(root, new.public)
    if app.out.json_mode:
        app.out.json({"old": old.public.key_id, "new": new.public.key_id, "public": str(public)})
        return 0
    app.out.line(f"rotated {old.public.key_id} -> {new.public.key_id}")
    app.out.line("  the ledger records it (key.rotated), signed by both keys")
    app.out.line(f"  new public key {public}: commit it; keep the old .pub (it verifies history)")
    app.out.line("  the old private key was deleted")
    return 0
