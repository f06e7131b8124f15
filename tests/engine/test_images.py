"""containers/<name>/Dockerfile images: content-hash tags, cached builds, clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import invoke

from runner.engine.fake import FakeBackend
from runner.engine.images import (
    FALLBACK_BASE,
    LABEL_IMAGE,
    BuildFailed,
    BuildRules,
    Builds,
    build,
    context_hash,
    image_tag,
    resolve_container,
)
from runner.errors import InvalidInput
from runner.policy.loader import load_policy

if TYPE_CHECKING:
    from runner.engine.docker.backend import DockerBackend

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / ".venv" / "bin" / "runner"
BUILDS = Builds(BuildRules(bases=("debian:bookworm-slim",)))
POLICY = "version: 1\nbuild: {from: [debian:bookworm-slim]}\n"


def test_context_hash_covers_names_modes_and_content(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "sub" / "a.sh").write_text("echo a\n")
    first = context_hash(ctx)
    assert first == context_hash(ctx)
    seen = {first}
    (ctx / "sub" / "a.sh").write_text("echo b\n")
    seen.add(context_hash(ctx))
    (ctx / "sub" / "a.sh").chmod(0o755)
    seen.add(context_hash(ctx))
    (ctx / "sub" / "a.sh").rename(ctx / "sub" / "b.sh")
    seen.add(context_hash(ctx))
    (ctx / "empty").mkdir()
    seen.add(context_hash(ctx))
    os.symlink("sub/b.sh", ctx / "link")
    seen.add(context_hash(ctx))
    assert len(seen) == 6


def test_a_missing_definition_names_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "containers" / "base").mkdir(parents=True)
    (tmp_path / "containers" / "base" / "Dockerfile").write_text("FROM scratch\n")
    backend = FakeBackend()
    with pytest.raises(InvalidInput, match=r"containers/nope/Dockerfile: .*\(known: base\)"):
        build(backend, "nope", tmp_path, BUILDS)
    assert backend.calls == []


@pytest.fixture
def probe(tmp_path: Path, docker_client: Any) -> Iterator[tuple[Path, str]]:
    """A repository with containers/probe (unique content); its images removed afterwards."""
    repo = tmp_path / "repo"
    ctx = repo / "containers" / "probe"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY hello /hello\n")
    (ctx / "hello").write_text(f"{uuid.uuid4()}\n")
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    yield repo, "probe"
    for image in docker_client.images.list(filters={"label": f"{LABEL_IMAGE}=probe"}):
        docker_client.images.remove(image.id, force=True)


@pytest.mark.docker
def test_build_tags_by_content_and_skips_an_existing_tag(
    probe: tuple[Path, str], docker_client: Any, backend: DockerBackend
) -> None:
    repo, name = probe
    first = build(backend, name, repo, BUILDS)
    assert first.tag == f"runner/probe:{context_hash(repo / 'containers' / 'probe')}"
    assert first.cached is False and first.size > 0
    image = docker_client.images.get(first.tag)
    assert image.labels[LABEL_IMAGE] == "probe"
    again = build(backend, name, repo, BUILDS)
    assert (again.cached, again.id, again.tag) == (True, first.id, first.tag)
    (repo / "containers" / "probe" / "hello").write_text("changed\n")
    changed = build(backend, name, repo, BUILDS)
    assert changed.cached is False and changed.tag != first.tag


@pytest.mark.docker
def test_a_failed_build_shows_its_last_output(
    probe: tuple[Path, str], backend: DockerBackend
) -> None:
    repo, name = probe
    (repo / "containers" / "probe" / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\nRUN echo marker-before-failure && exit 3\n"
    )
    with pytest.raises(BuildFailed) as caught:
        build(backend, name, repo, BUILDS)
    text = str(caught.value)
    assert text.startswith("containers/probe/Dockerfile: build failed: ")
    assert "returned a non-zero code: 3" in text
    assert "marker-before-failure" in text.split("last build output:")[1]
    assert caught.value.exit_code == 2


@pytest.mark.docker
def test_resolve_container_names_references_and_the_default(
    tmp_path: Path, docker_client: Any, backend: DockerBackend
) -> None:
    builds = Builds(load_policy(None, REPO).build)  # the project's own policy
    base = resolve_container(None, REPO, backend=backend, builds=builds)
    again = resolve_container("base", REPO, backend=backend, builds=builds)
    assert base == image_tag("base", REPO) == again
    assert docker_client.images.get(base).attrs["Config"]["User"] == "65534"
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    assert resolve_container(None, empty, backend=backend, builds=builds) == FALLBACK_BASE
    assert resolve_container(FALLBACK_BASE, REPO, backend=backend, builds=builds) == FALLBACK_BASE
    with pytest.raises(InvalidInput, match="not in containers/ and not a local image"):
        resolve_container("runner-test.invalid/nothing:1", REPO, backend=backend, builds=builds)


@pytest.mark.docker
def test_images_build_command_prints_tags_and_json(
    probe: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = probe
    monkeypatch.chdir(repo)
    done = invoke(tmp_path / "state", "images", "build")
    code, out, _ = done.code, done.out, done.err
    tag = image_tag("probe", repo)
    assert code == 0
    assert out.startswith(f"probe -> {tag}  ") and out.rstrip().endswith("(built)")
    done = invoke(tmp_path / "state", "images", "build", "probe", "--json")
    code, out, _ = done.code, done.out, done.err
    assert code == 0
    (entry,) = json.loads(out)["images"]
    assert (entry["name"], entry["tag"], entry["cached"]) == ("probe", tag, True)
    done = invoke(tmp_path / "state", "images", "build", "nope")
    code, _, err = done.code, done.out, done.err
    assert code == 2
    assert "no containers/<name>/Dockerfile for nope (known: probe)" in err


def test_images_build_without_an_engine_exits_4(tmp_path: Path) -> None:
    ctx = tmp_path / "containers" / "x"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = subprocess.run(
        [str(RUNNER), "images", "build"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 4, proc.stderr
    assert "no Docker engine answers" in proc.stderr
    assert "Traceback" not in proc.stderr
