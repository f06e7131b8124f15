"""Finding a secret in bytes that leave a job (an artifact's files): streaming, so memory
stays flat whatever their size.

The bytes are read as UTF-8 (a byte sequence that is not UTF-8 reads as U+FFFD, so a
secret inside a binary file is still found) and matched by a `Redactor` holding the
secrets to look for, in every form it masks (`runner.secrets.forms`), escapes and wrapped
base64 included. A secret stored transformed (compressed, encrypted, hashed, hex, UTF-16,
in an archive inside the artifact ...) is not found.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

from runner.secrets.redact import Redactor

CHUNK = 1 << 20


def holds_secret(chunks: Iterable[bytes], redactor: Redactor) -> bool:
    """Whether the bytes `chunks` make up hold anything `redactor` masks."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stream = redactor.stream()
    for chunk in chunks:
        stream.feed(decoder.decode(chunk))
        if stream.masked:
            return True
    stream.feed(decoder.decode(b"", final=True))
    stream.flush()
    return stream.masked
