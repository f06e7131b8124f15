"""actions/upload-artifact and actions/download-artifact, run by runner itself on the
run's artifact store (runner.run.builtin_actions), on the in-memory engine: what is
stored, when, under which name, and where it is placed. tests/run/test_run_compat.py
runs them in real containers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from fake_run import run_mission, script_of, scripted

from runner.engine.backend import ContainerSpec
from runner.engine.fake import Behaviour, Exit, FakeBackend
from runner.records.events import Annotation, ArtifactStored
from runner.records.sink import Recorder, Sink
from runner.run.workspace import UnsafeArchive, rewrite_archive

FAILED_BUILD = """\
name: m
jobs:
  build:
    outputs: {digest: "${{ steps.one.outputs.artifact-digest }}"}
    steps:
      - run: |
          write dist/a.txt A
          write dist/sub/b.txt B
      - run: exit 1
      - {uses: actions/upload-artifact@v4, if: failure(), with: {name: logs, path: dist/}}
      - id: one
        uses: actions/upload-artifact@v4
        if: always()
        with: {name: one, path: "${{ github.workspace }}/dist/a.txt"}
      - {uses: actions/upload-artifact@v4, with: {name: never, path: dist}}
  use:
    needs: [build]
    if: always()
    steps:
      - uses: actions/download-artifact@v4
        with: {name: logs}
      - {uses: actions/download-artifact@v4, with: {name: one, path: got}}
      - {uses: actions/download-artifact@v4, with: {path: all}}
      - run: look
"""


class Looking:
    """The scripted steps, and `look`: what the job's workspace holds when it runs."""

    def __init__(self) -> None:
        self.backend = FakeBackend(self)
        self.seen: dict[str, bytes] = {}

    def __call__(self, spec: ContainerSpec) -> Behaviour:
        if script_of(spec).strip() == "look":
            assert spec.workspace_volume is not None
            self.seen = dict(self.backend.volumes[spec.workspace_volume].files)
            return Exit(0)
        return scripted(spec)


def test_a_failed_jobs_upload_is_kept_and_downloaded_as_github_places_it(
    tmp_path: Path,
) -> None:
    looking, recorder = Looking(), Recorder()
    done = run_mission(tmp_path, FAILED_BUILD, backend=looking.backend, sink=Sink([recorder]))
    assert done.status() == {
        "build": ("failure", "step 'exit 1' failed: exit code 1"),
        "use": ("success", ""),
    }
    stored = [e for e in recorder.events if isinstance(e, ArtifactStored)]
    assert [(e.job, e.name, e.path) for e in stored] == [
        ("build", "logs", "dist"),
        ("build", "one", "dist/a.txt"),
    ]
    one = done.state.artifacts["one"]
    assert (one["type"], one["size"]) == ("file", 1)
    assert one["sha256"] == stored[1].sha256 == done.jobs["build"].outputs["digest"]
    assert done.state.artifacts["logs"]["type"] == "dir"
    placed = {path: data for path, data in looking.seen.items() if path != "data.txt"}
    assert placed == {
        "a.txt": b"A",  # the directory's contents, as GitHub places them
        "sub/b.txt": b"B",
        "got/a.txt": b"A",  # a file by its name
        "all/logs/a.txt": b"A",  # no name: every artifact under its name
        "all/logs/sub/b.txt": b"B",
        "all/one/a.txt": b"A",
    }


def test_nothing_to_upload_warns_or_fails_as_asked(tmp_path: Path) -> None:
    recorder = Recorder()
    done = run_mission(
        tmp_path,
        """\
        name: m
        jobs:
          warn:
            steps:
              - run: ok
              - {uses: actions/upload-artifact@v4, with: {name: w, path: nowhere}}
          ignore:
            steps:
              - run: ok
              - uses: actions/upload-artifact@v4
                with: {name: i, path: nowhere, if-no-files-found: ignore}
          error:
            steps:
              - run: ok
              - uses: actions/upload-artifact@v4
                with: {name: e, path: nowhere, if-no-files-found: error}
        """,
        sink=Sink([recorder]),
    )
    assert done.status() == {
        "warn": ("success", ""),
        "ignore": ("success", ""),
        "error": (
            "failure",
            "step 'actions/upload-artifact@v4' failed: no file or directory 'nowhere' in the "
            "workspace: artifact 'e' not uploaded",
        ),
    }
    warnings = [(e.job, e.message) for e in recorder.events if isinstance(e, Annotation)]
    assert warnings == [
        ("warn", "no file or directory 'nowhere' in the workspace: artifact 'w' not uploaded")
    ]
    assert done.state.artifacts == {}


def test_what_cannot_be_uploaded_or_downloaded_is_a_clear_failure(tmp_path: Path) -> None:
    jobs = {
        "glob": "{uses: actions/upload-artifact@v4, with: {path: 'dist/*.whl'}}",
        "lines": '{uses: actions/upload-artifact@v4, with: {path: "a\\nb"}}',
        "name": "{uses: actions/upload-artifact@v4, with: {name: 'a/b', path: data.txt}}",
        "out": "{uses: actions/upload-artifact@v4, with: {path: ../etc}}",
        "unknown": "{uses: actions/download-artifact@v4, with: {name: nope}}",
        "first": None,
    }
    text = "name: m\njobs:\n"
    for job, step in jobs.items():
        first = "{uses: actions/upload-artifact@v4, with: {path: data.txt}}"
        text += f"  {job}:\n    steps:\n      - run: ok\n      - {step or first}\n"
    text += "  twice:\n    needs: [first]\n    steps:\n      - run: ok\n"
    text += "      - {uses: actions/upload-artifact@v4, with: {path: data.txt}}\n"
    done = run_mission(tmp_path, text, max_parallel=1)
    reasons = {job: reason.split(" failed: ", 1)[-1] for job, (_, reason) in done.status().items()}
    assert reasons == {
        "glob": "actions/upload-artifact here takes one file or directory, not 'dist/*.whl' "
        "(upload the directory that holds the files (path: dist), or one upload step per path)",
        "lines": "actions/upload-artifact here takes one file or directory, not 'a\\nb' "
        "(upload the directory that holds the files (path: dist), or one upload step per path)",
        "name": "artifact name 'a/b' holds a character GitHub refuses in one "
        '(/ \\ " : < > | * ? or a line break)',
        "out": "upload-artifact path '../etc' is not a relative path inside the workspace "
        "(use a path relative to the repository root, without '..')",
        "unknown": "no artifact named 'nope' in this run (stored so far: none yet) "
        "(download-artifact reads this run's artifacts: the job that uploads it must be one "
        "this job `needs`)",
        "first": "",
        "twice": "this run already holds an artifact named 'artifact' (stored by job 'first') "
        "(name each upload of a run uniquely, e.g. `name: dist-${{ matrix.os }}`)",
    }
    assert json.dumps(done.state.artifacts["artifact"]["job"]) == '"first"'
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == [
        next(iter(done.state.artifacts.values()))["stored"].rsplit("/", 1)[-1]
    ]  # the refused second upload left nothing behind


def _tar(*members: tuple[str, str]) -> io.BytesIO:
    """A tar of (name, kind) members: `dir`, `file`, or `->TARGET` (a symlink)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[2:]
            tar.addfile(info, io.BytesIO(b"") if kind == "file" else None)
    buffer.seek(0)
    return buffer


def test_a_directorys_contents_never_point_past_where_they_are_placed() -> None:
    """Placed without its directory, a link that stayed inside the artifact (`dist/l ->
    ../x`) would point out of the download path: refused, as a member outside it is."""
    for hostile in (("dist/l", "->../x"), ("x", "file"), ("dist/l", "->sub/../../x")):
        source = _tar(("dist", "dir"), ("dist/sub", "dir"), hostile)
        with pytest.raises(UnsafeArchive, match="outside its directory 'dist'"):
            rewrite_archive(source, "got", 1000, contents=True)
    fine = _tar(("dist", "dir"), ("dist/sub", "dir"), ("dist/sub/f", "file"), ("dist/l", "->sub/f"))
    placed = io.BytesIO(b"".join(rewrite_archive(fine, "got", 1000, contents=True)))
    with tarfile.open(fileobj=placed) as tar:
        names = tar.getnames()
    assert names == ["got", "got/sub", "got/sub/f", "got/l"]


def test_setup_and_harden_runner_steps_run_no_container_and_set_the_version(
    tmp_path: Path,
) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: m
        jobs:
          j:
            outputs: {py: "${{ steps.py.outputs.python-version }}"}
            steps:
              - {uses: step-security/harden-runner@v2, with: {egress-policy: audit}}
              - {id: py, uses: actions/setup-python@v5, with: {python-version: "3.12"}}
              - {uses: dtolnay/rust-toolchain@1.80}
              - run: ok
        """,
    )
    assert done.status() == {"j": ("success", "")}
    assert done.jobs["j"].outputs == {"py": "3.12"}
    assert len(done.specs["j"]) == 1  # only the run: step had a container
