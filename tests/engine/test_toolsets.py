"""Toolsets: the closure read from a fake image tar, then real FROM-scratch images run hardened."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_container
from test_elf import make_elf

from runner.engine import toolsets
from runner.engine.backend import ContainerSpec, ImageConfig
from runner.engine.catalog import load_catalog, parse_catalog
from runner.engine.fake import FakeBackend
from runner.engine.images import Builds, resolve_container
from runner.engine.rootfs import ImageFS, NotInImage
from runner.engine.toolsets import build_toolset, collect
from runner.errors import InvalidInput
from runner.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]
LD = "/lib64/ld-linux-x86-64.so.2"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
Entry = bytes | tuple[str, str] | str  # file content | ("link", target) | "dir"


@pytest.fixture
def fake_image(tmp_path: Path) -> Iterator[Callable[[dict[str, Entry]], ImageFS]]:
    opened: list[ImageFS] = []

    def make(entries: dict[str, Entry]) -> ImageFS:
        opened.append(write_image(tmp_path / f"fake{len(opened)}.tar", entries))
        return opened[-1]

    yield make
    for fs in opened:
        fs.close()


def write_image(path: Path, entries: dict[str, Entry]) -> ImageFS:
    """An exported image filesystem, as `docker export` writes it (a merged-/usr layout)."""
    base: dict[str, Entry] = {
        "/usr": "dir",
        "/usr/bin": "dir",
        "/usr/lib": "dir",
        LIBDIR: "dir",
        "/usr/lib64": "dir",
        "/etc": "dir",
        "/bin": ("link", "usr/bin"),
        "/lib": ("link", "usr/lib"),
        "/lib64": ("link", "usr/lib64"),
        "/usr/lib64/ld-linux-x86-64.so.2": ("link", f"{LIBDIR}/ld-linux-x86-64.so.2"),
        f"{LIBDIR}/ld-linux-x86-64.so.2": make_elf(interp=None, needed=(), soname="ld.so"),
        f"{LIBDIR}/libc.so.6": make_elf(interp=LD, needed=("ld-linux-x86-64.so.2",)),
    }
    base |= entries
    with tarfile.open(path, "w") as tar:
        for member_path in sorted(base):
            value = base[member_path]
            info = tarfile.TarInfo(member_path.lstrip("/"))
            if value == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(value, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, value[1]
                tar.addfile(info)
            else:
                assert isinstance(value, bytes)
                info.size, info.mode = len(value), 0o755
                tar.addfile(info, io.BytesIO(value))
    return ImageFS(path, "fake")


def tool_elf(*needed: str, runpath: str | None = None) -> bytes:
    return make_elf(interp=LD, needed=(*needed, "libc.so.6"), runpath=runpath)


CATALOG = parse_catalog(
    """
sh: {paths: [/bin/sh], interpreter: true}
cat: {paths: [/bin/cat]}
app: {paths: [/opt/app/bin/app]}
tool: {paths: [/usr/bin/tool]}
script: {paths: [/usr/bin/script]}
py: {paths: [/usr/bin/py], files: ["/usr/lib/py3.*"], optional: [/etc/certs, /nope], interpreter: true}
""",
    "test catalog",
)


def kinds(plan: toolsets.Plan) -> dict[str, str]:
    return {path: kind for path, (kind, _) in plan.entries.items()}


def test_a_toolset_is_built_and_cached_through_the_backend_protocol(tmp_path: Path) -> None:
    """Export, closure, import and the cache, on the in-memory engine: no Docker."""
    write_image(
        tmp_path / "src.tar",
        {"/usr/bin/sh": ("link", "dash"), "/usr/bin/dash": tool_elf(), "/usr/bin/cat": tool_elf()},
    ).close()
    backend = FakeBackend()
    source = backend.add_image("src:1", (tmp_path / "src.tar").read_bytes())
    state = tmp_path / "state"
    toolset = build_toolset(backend, "src:1", ("sh", "cat"), CATALOG, state)
    assert toolset.image == f"runner-toolset:{toolset.manifest_digest}"
    assert backend.called("export_filesystem") == [(source.id,)]
    ((tag, config),) = backend.called("import_image")
    assert tag == toolset.image
    assert config == ImageConfig(
        user="65534",
        env={"PATH": toolsets.PATH},
        workdir="/workspace",
        labels={toolsets.LABEL_DIGEST: toolset.manifest_digest, toolsets.LABEL_SOURCE: source.id},
    )
    out = io.BytesIO()
    backend.export_filesystem(toolset.image, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = set(tar.getnames())
    assert {"usr/bin/dash", "usr/bin/cat", "etc/passwd", "tmp", "workspace"} <= names
    assert "usr/bin/ls" not in names
    again = build_toolset(backend, "src:1", ("cat", "sh"), CATALOG, state)
    assert (again.cached, again.image) == (True, toolset.image)
    assert len(backend.called("import_image")) == 1
    assert len(backend.called("export_filesystem")) == 2  # the one above, by this test
    with pytest.raises(InvalidInput, match="'absent:1' is not present in the engine"):
        build_toolset(backend, "absent:1", ("sh",), CATALOG, state)


# -- the closure, from headers only ---------------------------------------------------------


def test_sh_and_cat_keep_their_links_binaries_and_library_closure(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/usr/bin/sh": ("link", "dash"),
            "/usr/bin/dash": tool_elf(),
            "/usr/bin/cat": tool_elf(),
            "/usr/bin/ls": tool_elf("libselinux.so.1"),
            f"{LIBDIR}/libselinux.so.1": make_elf(interp=None, needed=("libc.so.6",)),
        },
    )
    plan = collect(fs, [CATALOG.get("sh"), CATALOG.get("cat")])
    assert kinds(plan) == {
        "/bin": "link",
        "/lib": "link",  # libc is found as /lib/x86_64-linux-gnu/libc.so.6
        "/lib64": "link",
        "/usr": "dir",
        "/usr/bin": "dir",
        "/usr/bin/sh": "link",
        "/usr/bin/dash": "file",
        "/usr/bin/cat": "file",
        "/usr/lib": "dir",
        LIBDIR: "dir",
        f"{LIBDIR}/libc.so.6": "file",
        f"{LIBDIR}/ld-linux-x86-64.so.2": "file",
        "/usr/lib64": "dir",
        "/usr/lib64/ld-linux-x86-64.so.2": "link",
    }
    assert plan.entries["/usr/bin/sh"] == ("link", "dash")
    assert plan.interpreter is True


def test_runpath_origin_is_searched_before_default_dirs(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/opt": "dir",
            "/opt/app": "dir",
            "/opt/app/bin": "dir",
            "/opt/app/lib": "dir",
            "/opt/app/bin/app": tool_elf("libapp.so", runpath="$ORIGIN/../lib"),
            "/opt/app/lib/libapp.so": make_elf(interp=None, needed=("libc.so.6",)),
            f"{LIBDIR}/libapp.so": make_elf(interp=None, needed=()),  # must not be chosen
        },
    )
    entries = kinds(collect(fs, [CATALOG.get("app")]))
    assert "/opt/app/lib/libapp.so" in entries
    assert f"{LIBDIR}/libapp.so" not in entries


def test_ld_so_conf_includes_are_parsed_and_wrong_class_libraries_skipped(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/etc/ld.so.conf": b"include /etc/ld.so.conf.d/*.conf\n",
            "/etc/ld.so.conf.d": "dir",
            "/etc/ld.so.conf.d/a.conf": b"# local first\n/usr/local/lib32\n/usr/local/lib\n",
            "/usr/local": "dir",
            "/usr/local/lib32": "dir",
            "/usr/local/lib": "dir",
            "/usr/local/lib32/libz.so.1": make_elf(bits=32, interp=None, needed=()),
            "/usr/local/lib/libz.so.1": make_elf(interp=None, needed=()),
            "/usr/bin/tool": tool_elf("libz.so.1"),
        },
    )
    entries = kinds(collect(fs, [CATALOG.get("tool")]))
    assert "/usr/local/lib/libz.so.1" in entries
    assert "/usr/local/lib32/libz.so.1" not in entries  # a 32-bit library: the loader skips it


def test_a_missing_library_of_a_tool_is_an_error_naming_it(fake_image: Any) -> None:
    fs = fake_image({"/usr/bin/tool": tool_elf("libgone.so.3")})
    with pytest.raises(InvalidInput, match=r"tool tool: library libgone\.so\.3 needed by"):
        collect(fs, [CATALOG.get("tool")])


def test_catalog_files_globs_trees_optional_and_their_elf_closure(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/usr/bin/py": tool_elf(),
            "/usr/lib/py3.11": "dir",
            "/usr/lib/py3.11/os.py": b"import sys\n",
            "/usr/lib/py3.11/site.py": ("link", "/etc/py/site.py"),
            "/usr/lib/py3.11/gone.py": ("link", "/nowhere/x.py"),
            "/usr/lib/py3.11/dyn": "dir",
            "/usr/lib/py3.11/dyn/_ssl.so": make_elf(interp=None, needed=("libssl.so.3",)),
            "/usr/lib/py3.11/dyn/_tk.so": make_elf(interp=None, needed=("libtk.so",)),
            f"{LIBDIR}/libssl.so.3": make_elf(interp=None, needed=("libc.so.6",)),
            "/etc/py": "dir",
            "/etc/py/site.py": b"# site\n",
            "/etc/certs": "dir",
            "/etc/certs/ca.pem": ("link", "/usr/share/ca/ca.crt"),
            "/usr/share": "dir",
            "/usr/share/ca": "dir",
            "/usr/share/ca/ca.crt": b"-----BEGIN CERTIFICATE-----\n",
            "/usr/lib/other": "dir",
            "/usr/lib/other/big.dat": b"x" * 100,
        },
    )
    plan = collect(fs, [CATALOG.get("py")])
    entries = kinds(plan)
    for path in [
        "/usr/lib/py3.11/os.py",
        "/usr/lib/py3.11/dyn/_ssl.so",
        f"{LIBDIR}/libssl.so.3",  # the closure of an extension module
        "/etc/py/site.py",  # the target of a link inside a copied tree
        "/usr/share/ca/ca.crt",  # an optional file, through its link
    ]:
        assert entries[path] == "file", path
    assert entries["/usr/lib/py3.11/gone.py"] == "link"  # dangling, kept as it is
    assert "/usr/lib/other/big.dat" not in entries
    # an extension module whose library the image lacks is a warning, not a failure
    assert any("libtk.so needed by /usr/lib/py3.11/dyn/_tk.so" in w for w in plan.warnings)


def test_a_required_file_pattern_matching_nothing_is_an_error(fake_image: Any) -> None:
    fs = fake_image({"/usr/bin/py": tool_elf()})
    with pytest.raises(InvalidInput, match=r"tool py: /usr/lib/py3\.\* matches nothing"):
        collect(fs, [CATALOG.get("py")])


def test_multicall_binaries_are_refused_by_name_and_by_content(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/usr/bin/busybox": make_elf(interp=None, needed=()) + b"BusyBox v1.36.1 (x)\0",
            "/usr/bin/cat": ("link", "busybox"),
            "/usr/bin/tool": make_elf(interp=None, needed=()) + b"\0toybox\0",
        },
    )
    with pytest.raises(InvalidInput, match=r"/bin/cat resolves to /usr/bin/busybox, a multi-call"):
        collect(fs, [CATALOG.get("cat")])
    with pytest.raises(InvalidInput, match=r"multi-call binary \(it contains 'toybox'\)"):
        collect(fs, [CATALOG.get("tool")])
    with pytest.raises(InvalidInput, match="'busybox' is a multi-call binary"):
        CATALOG.get("busybox")


def test_a_script_tool_needs_its_interpreter_among_the_tools(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/usr/bin/script": b"#!/bin/sh -e\necho hi\n",
            "/usr/bin/sh": ("link", "dash"),
            "/usr/bin/dash": tool_elf(),
        },
    )
    with pytest.raises(InvalidInput, match="run by /bin/sh, which is not one of the job's tools"):
        collect(fs, [CATALOG.get("script")])
    entries = kinds(collect(fs, [CATALOG.get("script"), CATALOG.get("sh")]))
    assert entries["/usr/bin/script"] == "file"


def test_symlink_loops_and_setuid_bits(fake_image: Any) -> None:
    fs = fake_image({"/usr/bin/a": ("link", "b"), "/usr/bin/b": ("link", "a")})
    with pytest.raises(NotInImage, match="too many levels of symlinks"):
        fs.resolve("/bin/a")
    plan = toolsets.Plan()
    closure = toolsets._Closure(fs, plan)
    info = fs.members[f"{LIBDIR}/libc.so.6"]
    info.mode = 0o4755
    closure.add(f"{LIBDIR}/libc.so.6", what="t")
    assert plan.entries[f"{LIBDIR}/libc.so.6"] == ("file", 0o755)


# -- real images ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toolset-state")


@pytest.fixture(scope="module")
def backend() -> Iterator[Any]:
    from runner.engine.docker.backend import connect

    backend = connect()
    yield backend
    backend.close()


def run(
    backend: Any, image: str, command: list[str], *, interpreter: bool = False
) -> tuple[int, str]:
    """Run `command` in a hardened container (SPEC 6) of `image`; (exit code, output)."""
    spec = ContainerSpec(
        image=image,
        command=command,
        env={},
        labels={"runner.test": "toolsets"},
        memory_bytes=256 * 1024 * 1024,
        cpus=1,
        pids=64,
        seccomp_deny_memfd=interpreter,
    )
    cid = backend.create(spec)
    try:
        code, output = run_container(backend, cid, 60)
    finally:
        backend.remove(cid)
    assert code is not None
    return code, output


BASE = "debian:bookworm-slim"


@pytest.mark.docker
def test_sh_cat_toolset_runs_cat_and_nothing_else(backend: Any, state: Path) -> None:
    toolset = build_toolset(backend, BASE, ("sh", "cat"), CATALOG_REAL, state)
    assert re.fullmatch(r"runner-toolset:[0-9a-f]{64}", toolset.image)
    for command in (["ls"], ["/bin/ls"], ["busybox", "ls"]):
        code, output = run(backend, toolset.image, command)
        assert code in (126, 127), (command, output)
    script = "ls; echo ls=$?; sh -c ls; echo shls=$?; /bin/ls; echo binls=$?; busybox ls; echo bb=$?; cat /etc/passwd"
    code, output = run(backend, toolset.image, ["sh", "-c", script])
    assert code == 0, output
    for word in ("ls=127", "shls=127", "binls=127", "bb=127"):
        assert word in output
    assert "nobody:x:65534:65534:" in output
    image = backend.client.images.get(toolset.image)
    config = image.attrs["Config"]
    assert config["User"] == "65534"
    assert [e.split("=")[0] for e in config["Env"]] == ["PATH"]


CATALOG_REAL = load_catalog(REPO)  # runner's built-in catalog, as the project extends it


def _export_layer(client: Any, image: str) -> dict[str, tuple[str, int, str]]:
    """path -> (type, mode, sha256) of the single layer of a FROM-scratch image."""
    raw = b"".join(client.images.get(image).save())
    with tarfile.open(fileobj=io.BytesIO(raw)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        (layer,) = manifest[0]["Layers"]
        data = outer.extractfile(layer).read()  # type: ignore[union-attr]
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            path = "/" + member.name.rstrip("/")
            if member.isdir():
                found[path] = ("dir", member.mode, "")
            elif member.issym():
                found[path] = ("link", 0, member.linkname)
            else:
                body = tar.extractfile(member).read()  # type: ignore[union-attr]
                found[path] = ("file", member.mode, hashlib.sha256(body).hexdigest())
    return found


def _source_file(backend: Any, image: str, path: str, tmp_path: Path) -> Path:
    """A file of `image`, copied out of a never-started container."""
    cid = backend.client.containers.create(image, command=["x"], labels={"runner.test": "toolsets"})
    try:
        stream, _ = cid.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            (member,) = tar.getmembers()
            out = tmp_path / member.name
            out.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    finally:
        cid.remove(force=True)
    return out


@pytest.mark.docker
def test_manifest_is_exactly_the_image_and_the_readelf_closure(
    backend: Any, state: Path, tmp_path: Path
) -> None:
    toolset = build_toolset(backend, BASE, ("sh", "cat"), CATALOG_REAL, state)
    manifest = toolset.manifest
    assert manifest["tools"] == ["cat", "sh"]
    assert manifest["source_image"] == backend.client.images.get(BASE).id
    digest = hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert toolset.manifest_digest == digest and toolset.image.endswith(digest)
    # every manifest entry is in the image layer, with the same mode and content, and back
    layer = _export_layer(backend.client, toolset.image)
    listed = {}
    for entry in manifest["files"]:
        mode = int(entry.get("mode", "0"), 8)
        listed[entry["path"]] = (
            entry["type"],
            mode,
            entry.get("sha256") or entry.get("target", ""),
        )
    assert listed == layer
    # the executables are exactly the tools, and the libraries exactly what readelf says
    files = {e["path"] for e in manifest["files"] if e["type"] == "file"}
    assert {p for p in files if p.startswith("/usr/bin/")} == {"/usr/bin/cat", "/usr/bin/dash"}
    expected_libs: set[str] = set()
    for binary in ("/usr/bin/dash", "/usr/bin/cat", f"{LIBDIR}/libc.so.6"):
        local = _source_file(backend, BASE, binary, tmp_path)
        dynamic = subprocess.run(
            ["readelf", "-d", "-l", str(local)], capture_output=True, text=True
        )
        expected_libs |= set(re.findall(r"Shared library: \[([^\]]+)\]", dynamic.stdout))
        expected_libs |= {
            os.path.basename(p) for p in re.findall(r"interpreter: ([^\]]+)\]", dynamic.stdout)
        }
    libs = {os.path.basename(p) for p in files if p.startswith("/usr/lib/")}
    assert libs == expected_libs
    # sha256 of a kept file is that of the source image's file
    dash = _source_file(backend, BASE, "/usr/bin/dash", tmp_path)
    (entry,) = [e for e in manifest["files"] if e["path"] == "/usr/bin/dash"]
    assert entry["sha256"] == hashlib.sha256(dash.read_bytes()).hexdigest()
    assert entry["size"] == dash.stat().st_size
    modes = {e["path"]: e.get("mode") for e in manifest["files"]}
    assert (modes["/tmp"], modes["/workspace"], modes["/etc/passwd"]) == ("1777", "0777", "0644")


@pytest.mark.docker
def test_a_cached_build_returns_the_same_tag_without_rebuilding(backend: Any, state: Path) -> None:
    first = build_toolset(backend, BASE, ("cat", "sh"), CATALOG_REAL, state)
    image_id = backend.client.images.get(first.image).id
    for tar in (state / "cache" / "rootfs").glob("*.tar"):
        tar.unlink()  # a rebuild would have to export the source image again
    again = build_toolset(backend, BASE, ("sh", "cat", "sh"), CATALOG_REAL, state)
    assert again.cached is True
    assert (again.image, again.manifest) == (first.image, first.manifest)
    assert backend.client.images.get(again.image).id == image_id
    assert not list((state / "cache" / "rootfs").glob("*.tar"))
    # a damaged cache record is not trusted: the toolset is rebuilt, identically
    (record,) = [
        path
        for path in (state / "cache" / "toolsets").glob("*.json")
        if json.loads(path.read_text())["digest"] == first.manifest_digest
    ]
    record.write_text(record.read_text().replace('"0755"', '"4755"', 1))
    rebuilt = build_toolset(backend, BASE, ("sh", "cat"), CATALOG_REAL, state)
    assert rebuilt.cached is False and rebuilt.image == first.image


@pytest.mark.docker
def test_python_toolset_runs_a_script_with_its_standard_library(backend: Any, state: Path) -> None:
    source = resolve_container(
        "python", REPO, backend=backend, builds=Builds(load_policy(None, REPO).build)
    )
    toolset = build_toolset(backend, source, ("sh", "python3"), CATALOG_REAL, state)
    assert toolset.interpreter is True
    script = (
        "import hashlib, json, sys; "
        "print(json.dumps({'h': hashlib.sha256(b'runner').hexdigest(), 'v': sys.version_info[0]}))"
    )
    code, output = run(backend, toolset.image, ["python3", "-c", script], interpreter=True)
    assert code == 0, output
    assert json.loads(output) == {"h": hashlib.sha256(b"runner").hexdigest(), "v": 3}
    code, output = run(backend, toolset.image, ["sh", "-c", "cat /etc/passwd; echo rc=$?"])
    assert "rc=127" in output
    source_size = backend.client.images.get(source).attrs["Size"]
    assert backend.client.images.get(toolset.image).attrs["Size"] < source_size / 3


@pytest.mark.docker
def test_busybox_is_refused_and_tools_all_is_the_source_image(backend: Any, state: Path) -> None:
    with pytest.raises(InvalidInput, match=r"/bin/cat resolves to /bin/busybox, a multi-call"):
        build_toolset(backend, "runner-base/busybox:latest", ("cat",), CATALOG_REAL, state)
    with pytest.raises(InvalidInput, match="'busybox' is a multi-call binary") as caught:
        build_toolset(backend, BASE, ("busybox",), CATALOG_REAL, state)
    assert caught.value.exit_code == 2
    whole = build_toolset(backend, BASE, "all", CATALOG_REAL, state)
    assert whole.image == backend.client.images.get(BASE).id
    assert whole.manifest["tools"] == "all" and whole.interpreter is True
    with pytest.raises(InvalidInput, match="tool 'nosuch' is not in image "):
        build_toolset(backend, BASE, ("nosuch",), CATALOG_REAL, state)


def test_a_repository_entrys_files_bring_no_program(fake_image: Any) -> None:
    """`files` are data: a repository catalog's entry naming a directory that holds a
    program (here perl, next to the tool) is refused; runner's own entries may (git's
    helpers), and libraries among the files are fine."""
    fs = fake_image(
        {
            "/opt": "dir",
            "/opt/kit": "dir",
            "/opt/kit/cat": tool_elf(),
            "/opt/kit/lib": "dir",
            "/opt/kit/lib/libkit.so": make_elf(interp=None, needed=(), soname="libkit.so"),
            "/opt/kit/perl": tool_elf(),
            "/opt/kit/notes.txt": b"data\n",
        }
    )
    text = "kit: {paths: [/opt/kit/cat], files: [/opt/kit/lib, /opt/kit/notes.txt]}\n"
    assert (
        "/opt/kit/lib/libkit.so"
        in collect(fs, [parse_catalog(text, "repo", builtin=False).get("kit")]).entries
    )
    wide = "kit: {paths: [/opt/kit/cat], files: [/opt/kit]}\n"
    with pytest.raises(InvalidInput, match=r"/opt/kit/perl is a program \(an ELF executable\)"):
        collect(fs, [parse_catalog(wide, "repo", builtin=False).get("kit")])
    assert "/opt/kit/perl" in collect(fs, [parse_catalog(wide, "runner").get("kit")]).entries


# -- tools in no catalog: looked up by name in the image -----------------------------------


def test_a_tool_in_no_catalog_is_found_by_name_in_path_order(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/usr/local": "dir",
            "/usr/local/bin": "dir",
            "/usr/local/bin/id": tool_elf(),
            "/usr/bin/id": tool_elf(),
            "/usr/bin/base64": ("link", "base64.coreutils"),
            "/usr/bin/base64.coreutils": tool_elf(),
        }
    )
    catalog = parse_catalog("", "empty")
    plan = collect(fs, [catalog.get("id"), catalog.get("base64")])
    entries = kinds(plan)
    assert entries["/usr/local/bin/id"] == "file" and "/usr/bin/id" not in entries
    assert entries["/usr/bin/base64"] == "link" and entries["/usr/bin/base64.coreutils"] == "file"
    assert f"{LIBDIR}/libc.so.6" in entries and not plan.interpreter


def test_each_tool_the_image_lacks_is_its_own_problem(fake_image: Any) -> None:
    fs = fake_image({"/usr/bin/make": tool_elf(), "/usr/bin/cc1": tool_elf("libmpc.so.3")})
    catalog = parse_catalog("cc1: {paths: [/usr/bin/cc1]}\npy: {paths: [/usr/bin/py]}", "t")
    tools = [catalog.get(name) for name in ("gcc", "make", "cc1", "py", "node")]
    plan, problems = toolsets.survey(fs, tools)
    looked = "/usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin"
    assert [(p.tool, p.kind, p.message) for p in problems] == [
        ("gcc", "missing", f"tool 'gcc' is not in image fake (looked in {looked})"),
        (
            "cc1",
            "other",
            "tool cc1: library libmpc.so.3 needed by /usr/bin/cc1 is not in image fake",
        ),
        ("py", "missing", "tool 'py': /usr/bin/py is not in image fake"),
        ("node", "missing", f"tool 'node' is not in image fake (looked in {looked})"),
    ]
    assert "/usr/bin/make" in plan.entries
    with pytest.raises(InvalidInput) as caught:
        collect(fs, tools)
    assert caught.value.message.splitlines()[0] == problems[0].message


def test_a_script_run_by_env_needs_the_program_env_runs(fake_image: Any) -> None:
    fs = fake_image(
        {
            "/usr/bin/env": tool_elf(),
            "/usr/bin/node": tool_elf(),
            "/usr/bin/npm": ("link", "../share/npm/bin/npm-cli.js"),
            "/usr/share": "dir",
            "/usr/share/npm": "dir",
            "/usr/share/npm/bin": "dir",
            "/usr/share/npm/bin/npm-cli.js": b"#!/usr/bin/env -S node --no-warnings\nx()\n",
        }
    )
    catalog = parse_catalog("", "empty")
    _, problems = toolsets.survey(fs, [catalog.get("npm")])
    assert [(p.kind, p.needs) for p in problems] == [("interpreter", "env")]
    _, problems = toolsets.survey(fs, [catalog.get("npm"), catalog.get("env")])
    assert [(p.kind, p.needs) for p in problems] == [("interpreter", "node")]
    assert problems[0].message == (
        "tool npm: /usr/share/npm/bin/npm-cli.js is a script run by `/usr/bin/env -S node "
        "--no-warnings`, and node is not one of the job's tools: add node to `tools:` too"
    )
    plan = collect(fs, [catalog.get(n) for n in ("npm", "env", "node")])
    assert plan.interpreter  # node is an interpreter, found by name


def test_an_executable_that_resolves_to_an_interpreter_makes_an_interpreters_toolset(
    fake_image: Any,
) -> None:
    """A catalog cannot hide an interpreter behind another name: the toolset of a tool
    whose executable is a link to python3.11 denies memfd_create like python3's."""
    fs = fake_image({"/usr/bin/calc": ("link", "python3.11"), "/usr/bin/python3.11": tool_elf()})
    entry = parse_catalog("calc: {paths: [/usr/bin/calc]}\n", "repo", builtin=False)
    assert not entry.get("calc").interpreter
    assert collect(fs, [entry.get("calc")]).interpreter
