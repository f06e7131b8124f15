"""`runner init`: a starter policy, tool catalog and mission for the repository it runs in.

Writes, beneath the working directory (the repository), through `repo_files.write_new_file`
(no link in the tree makes it write outside the root):

    policies/default.yml   the policy: default deny, runner's built-in `base` image, a few
                           tools, limits; commented examples of what to grant next
    containers/tools.yml   the tool catalog, all comments: it extends runner's built-in
                           one, and a tool in no catalog is found in the job's image
    .missions/ci.yml       a GitHub Actions workflow runner runs (on push and pull_request)

It never overwrites: when any of them exists (a file, a directory, a link), nothing is
written and the error names each one (exit 2). What it writes validates, passes `runner
policy check` and runs (`runner run`) as it is. `--json` prints `{"written": [...]}`.
"""

from __future__ import annotations

import re
from pathlib import Path

from runner import repo_files
from runner.app import App
from runner.errors import InvalidInput

POLICY = """\
# runner's policy for {repo} (SPEC 5): default deny, a job gets only what is listed here.
# Every change shows in `runner policy diff` and in the audit ledger; `runner policy check`
# says what each mission asks for and whether this allows it.
version: 1
images: [base]                # runner's built-in base image; add containers/<name>/ builds
tools: [sh, cat, ls]          # what jobs may list in `tools:` (see containers/tools.yml)
limits: {{timeout-minutes: 30, memory: 1g, cpus: 1, pids: 256}}
# What to grant next, when a mission needs it:
# runs-on: {{ubuntu-latest: base}}          # GitHub runner labels -> images
# toolchains: {{python: {{"3.11": python}}}}  # setup-python's version -> an allowed image
# build: {{from: ["debian:bookworm-slim"]}}  # the images a containers/<name>/Dockerfile may use
"""

CATALOG = """\
# The tool catalog of {repo}: it extends runner's built-in one (sh, cat, ls, python3, git,
# gcc, ...), so it may stay empty. A tool in no catalog is looked up by name in the job's
# image (/usr/local/bin, /usr/bin, /bin, ...) with the libraries it links; an entry is
# needed only for a tool that needs more than that (data files, helper programs):
#
#   npm:
#     description: npm from Debian's nodejs packaging (a script: needs node too)
#     paths: [npm]                # a bare name: looked up in the image
#     files: [/usr/share/nodejs]  # data only: never a directory of programs
#
# The catalog is trusted configuration, like policies/default.yml.
"""

MISSION = """\
# A mission of {repo}: GitHub Actions syntax. `runner validate` checks it, `runner plan
# .missions/ci.yml` shows its jobs, `runner run` runs it, each step in its own container.
name: ci
on: [push, pull_request]
jobs:
  check:
    runs-on: ubuntu-latest
    tools: [sh, ls]             # runner's one addition: what the job's containers hold
    steps:
      - uses: actions/checkout@v4
      - name: List the repository
        run: ls
"""

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")
FILES = {
    "policies/default.yml": POLICY,
    "containers/tools.yml": CATALOG,
    ".missions/ci.yml": MISSION,
}


def main(app: App) -> int:
    root = app.root
    there = [
        rel
        for rel in FILES
        if (root / rel).is_symlink() or repo_files.lookup(root, rel).kind != "missing"
    ]
    if there:
        raise InvalidInput(
            f"{', '.join(there)} already exist{'s' if len(there) == 1 else ''} in {root}: "
            "runner init never overwrites a file, so it wrote nothing",
            hint="move the file(s) away and run `runner init` again, or edit them yourself",
        )
    name = _name(root)
    written: list[str] = []
    for rel, template in FILES.items():
        if not repo_files.write_new_file(root, rel, template.format(repo=name).encode()):
            raise InvalidInput(
                f"{rel} appeared while runner init was writing, so it was left as it is",
                hint=f"wrote only {', '.join(written) or 'nothing'}; check them and re-run",
            )
        written.append(rel)
    if app.out.json_mode:
        app.out.json({"written": written})
        return 0
    for rel in written:
        app.out.line(f"wrote {rel}")
    app.out.line("next: `runner validate`, `runner policy check`, then `runner run`")
    return 0


def _name(root: Path) -> str:
    """The repository's folder name for the files' first comments, when it is plain: a
    name is the invoker's, but a line break in it would write YAML, not a comment."""
    name = root.resolve().name
    return name if _PLAIN.fullmatch(name) else "this repository"
