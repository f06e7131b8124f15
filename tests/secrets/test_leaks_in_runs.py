"""No secret is ever written: a real run, in real containers, whose steps print a secret
in every way issue 11 found it leaking, then a scan of every byte the run left.

The secret is 71 characters long and holds a quote, a backslash, `%`, `&`, `+`, a space
and non-ASCII characters. It is printed raw, through base64 wrapped at 76 (Python's
`encodebytes`, as coreutils `base64`) and 64 columns, at another alignment inside a
longer base64 stream, in a Python `KeyError` traceback, inside escape sequences, with a
control character inside it, as a `::warning::` with `%25`; it goes through `fromJSON()`,
a bad `$RUNNER_OUTPUT` line, a bad `$RUNNER_ENV` name, an unclosed heredoc, a job output
to a job that was not granted it, and an artifact. (The engine's own data directory is
another test's: tests/engine.)
"""

from __future__ import annotations

import base64
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import runner_cli
from leaks import leaked

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]

SECRET = ("tok-Zq!x/9+&%25\"q'\\ä ö-€-" + "7f3a91c2Z9x8y7w6v5u4t3s2r1" * 3)[:71]
assert len(SECRET) == 71 and "=" not in SECRET

POLICY = """\
version: 1
images: [python]
tools: [sh, python3]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
build: {from: [debian:bookworm-slim], network: [python]}
rules:
  - name: granted
    match: {path: .missions/m.yml, job: "*"}
    allow: {secrets: [TOKEN]}
"""

PRINT = """\
import base64, os, shlex, sys, textwrap
t = os.environ["TOKEN"]
b = t.encode()
print("plain:", t)
print("b64:")
print(base64.encodebytes(b).decode(), end="")
print(base64.encodebytes(b"xy" + b + b"z").decode(), end="")
print("\\n".join(textwrap.wrap(base64.urlsafe_b64encode(b).decode(), 64)))
whole = base64.b64encode(b).decode()
print("token: " + whole[:76] + "\\n" + whole[76:] + " (end)")
print("\\x1b[31m" + t + "\\x1b[0m")
print(t[:30] + "\\x1b[1;32m" + t[30:] + "\\x1b[0m")
print(t[:20] + "\\x07\\u200b" + t[20:])
print("::warning::" + t.replace("%", "%25"))
print("shell:", shlex.quote(t), repr(t), ascii(t))
"""

MISSION = """\
name: leaks
on: [manual]
jobs:
  leak:
    container: python
    tools: [sh, python3]
    permissions: {secrets: [TOKEN]}
    env: {TOKEN: "${{ secrets.TOKEN }}"}
    steps:
      - id: s
        run: |
          python3 print.py
          echo "word=$TOKEN" >> "$RUNNER_OUTPUT"
      - run: python3 -c 'import os; {}[os.environ["TOKEN"]]'
        continue-on-error: true
    outputs:
      word: ${{ steps.s.outputs.word }}
  reader:
    needs: [leak]
    if: always()
    container: python
    tools: [sh]
    steps:
      - run: echo "reader got [${{ needs.leak.outputs.word }}]"
  artifact:
    container: python
    tools: [sh, python3]
    permissions: {secrets: [TOKEN]}
    steps:
      - run: python3 -c 'import base64, os; print(base64.b64encode(os.environb[b"TOKEN"]).decode())' > report.txt
        env: {TOKEN: "${{ secrets.TOKEN }}"}
    produces:
      - {name: report, path: report.txt, type: file}
  json:
    container: python
    tools: [sh]
    permissions: {secrets: [TOKEN]}
    env: {TOKEN: "${{ secrets.TOKEN }}"}
    steps:
      - id: s
        run: echo "v=$TOKEN" >> "$RUNNER_OUTPUT"
      - run: echo "${{ fromJSON(steps.s.outputs.v) }}"
  output-line:
    container: python
    tools: [sh]
    permissions: {secrets: [TOKEN]}
    steps:
      - run: echo "$TOKEN" >> "$RUNNER_OUTPUT"
        env: {TOKEN: "${{ secrets.TOKEN }}"}
  env-name:
    container: python
    tools: [sh]
    permissions: {secrets: [TOKEN]}
    steps:
      - run: echo "$TOKEN=1" >> "$RUNNER_ENV"
        env: {TOKEN: "${{ secrets.TOKEN }}"}
  heredoc:
    container: python
    tools: [sh]
    permissions: {secrets: [TOKEN]}
    steps:
      - run: printf 'x<<%s\\nvalue\\n' "$TOKEN" >> "$RUNNER_OUTPUT"
        env: {TOKEN: "${{ secrets.TOKEN }}"}
"""


def strings(document: Any) -> Iterator[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from strings(value)
    elif isinstance(document, list):
        for item in document:
            yield from strings(item)


def test_no_byte_the_run_left_holds_the_secret_in_any_form(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "containers", repo / "containers")
    (repo / ".missions").mkdir()
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    (repo / ".missions" / "m.yml").write_text(MISSION)
    (repo / "print.py").write_text(textwrap.dedent(PRINT))
    state = tmp_path / "state"
    junit = tmp_path / "junit.xml"
    done = runner_cli(
        repo, state, "run", "--secret", "TOKEN=MY_TOKEN", "--junit", str(junit), MY_TOKEN=SECRET
    )
    assert done.returncode == 1, done.stderr
    run_dir = next((state / "runs").iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    jobs = record["jobs"]
    assert {key: job["status"] for key, job in jobs.items()} == {
        "leak": "success",
        "reader": "success",
        "artifact": "failure",
        "json": "failure",
        "output-line": "failure",
        "env-name": "failure",
        "heredoc": "failure",
    }
    assert jobs["artifact"]["reason"] == (
        "artifact 'report': 'report.txt' holds a secret granted to its job or a value the "
        "job masked, so it was not stored"
    )
    assert jobs["leak"]["outputs"] == {}
    assert jobs["json"]["reason"].endswith(
        "failed: fromJSON(): not valid JSON: '***' (Expecting value: line 1 column 1 (char 0))"
    )
    assert jobs["output-line"]["reason"].endswith(
        "failed: $RUNNER_OUTPUT: line 1: '***' is neither name=value nor name<<DELIMITER"
    )
    assert "failed: $RUNNER_ENV: line 1: '***" in jobs["env-name"]["reason"]
    assert "failed: $RUNNER_OUTPUT: line 1: the heredoc for '" in jobs["heredoc"]["reason"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    lines = [e.get("line", "") for e in events if e["kind"] == "output"]
    assert "plain: ***" in lines and "reader got []" in lines
    assert any("KeyError: '***'" in line for line in lines), lines
    notes = {e["message"] for e in events if e["kind"] == "annotation"}
    assert notes >= {
        "***",
        "Skip output 'word' since it may contain secret (job leak does not pass it on)",
    }
    assert not (run_dir / "artifacts" / "report.tar").exists(), notes

    written = {"stdout": done.stdout, "stderr": done.stderr, "junit": junit.read_text()}
    for path in state.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.parent.name == "rootfs":  # an image's files (258 MB): the secret's bytes
            for form in (SECRET.encode(), base64.b64encode(SECRET.encode())[:60]):
                assert form not in data, path
            continue
        written[str(path.relative_to(state))] = data.decode("utf-8", "replace")
    for args in (
        ("runs", "--json"),
        ("runs",),
        ("logs", run_dir.name),
        ("logs", run_dir.name, "--json"),
        ("audit", "show", "--json"),
        ("audit", "show"),
    ):
        shown = runner_cli(repo, state, *args)
        assert shown.returncode == 0, shown.stderr
        written[" ".join(args)] = shown.stdout + shown.stderr
    assert len(written) > 10
    for name, text in written.items():
        assert leaked(text, SECRET) == [], name
        for line in text.split("\n"):
            try:
                document = json.loads(line)
            except ValueError:
                continue
            for value in strings(document):
                assert leaked(value, SECRET) == [], (name, value)
