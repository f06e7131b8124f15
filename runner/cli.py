"""The command line: the click group, its options, and nothing else.

Each command lives in `runner/commands/<name>.py` as a typed `main(app, ...) -> int`;
this module only declares options and hands over. Errors become messages and exit codes
in `runner.error_handler`, in one place.

Each command's module is imported when that command runs, not when the group is built:
`runner run` needs the Docker SDK and the whole run path (about 0.35 s of imports), which
`runner --help`, `validate` or `logs` should not pay for. These late imports dodge no
cycle (the import-linter contract in pyproject.toml sees them and keeps `cli` on top).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from runner import __version__
from runner.app import App, Engine, Trust
from runner.error_handler import Exit, handle_errors
from runner.output import Output

json_option = click.option("--json", "json_", is_flag=True, help="Print JSON for machines.")
DEFAULT_EVENT = "push"  # as act's: a ported workflow runs as it would on a push
KEY_WRITERS = frozenset({"run", "keys"})  # commands that may write the signing key
F = TypeVar("F", bound=Callable[..., Any])


def trust_options(function: Any) -> Any:
    """Where the trusted configuration comes from (runner.trusted): `--trusted-ref`,
    `--policy`, `--catalog`."""
    for option in reversed(
        [
            click.option(
                "--trusted-ref",
                metavar="REF",
                help="Read the policy, the tool catalog, the trusted keys and containers/ "
                "from this git ref (e.g. origin/main), never from the working tree.",
            ),
            click.option(
                "--policy",
                "policy",
                type=click.Path(path_type=Path),
                help="Policy file (default: policies/default.yml).",
            ),
            click.option(
                "--catalog",
                type=click.Path(path_type=Path),
                help="Tool catalog file (default: containers/tools.yml).",
            ),
        ]
    ):
        function = option(function)
    return function


def match_options(function: Any) -> Any:
    """What policy rules match besides the mission's path: `--event`, `--ref`."""
    function = click.option(
        "--ref",
        metavar="REF",
        help="The git ref this runs for, as rules' `match.ref` sees it "
        "(default: git's HEAD, e.g. refs/heads/main; none when detached).",
    )(function)
    return click.option(
        "--event",
        default=DEFAULT_EVENT,
        show_default=True,
        help="The event: rules' `match.event` sees it (and `run` selects missions by it).",
    )(function)


def engine_options(*, images: bool) -> Callable[[F], F]:
    """`--backend` (RUNNER_BACKEND) and the Kubernetes backend's options (SPEC 10); the
    image delivery and storage options only where steps run (`images`)."""

    def decorate(function: F) -> F:
        options = [
            click.option(
                "--backend",
                type=click.Choice(["docker", "kubernetes"]),
                default="docker",
                show_default=True,
                envvar="RUNNER_BACKEND",
                help="The engine: the local Docker API, or the cluster of the current "
                "kubeconfig context (KUBECONFIG) or in-cluster configuration.",
            ),
            click.option(
                "--namespace",
                envvar="RUNNER_NAMESPACE",
                help="Kubernetes namespace (default: the kubeconfig context's).",
            ),
        ]
        if images:
            options += [
                click.option(
                    "--image-registry",
                    metavar="PREFIX",
                    envvar="RUNNER_IMAGE_REGISTRY",
                    help="Kubernetes: push step images under PREFIX, pin them by digest.",
                ),
                click.option(
                    "--load-images",
                    metavar="CONTAINERD_SOCKET",
                    envvar="RUNNER_LOAD_IMAGES",
                    help="Kubernetes: load step images into this single development "
                    "node's containerd (e.g. /tmp/k8s/containerd/containerd.sock).",
                ),
                click.option(
                    "--storage-class",
                    envvar="RUNNER_STORAGE_CLASS",
                    help="Kubernetes: storage class of each job's claims; it must mount "
                    "them noexec (default: the cluster's default class).",
                ),
                click.option(
                    "--exec-storage-class",
                    envvar="RUNNER_EXEC_STORAGE_CLASS",
                    help="Kubernetes: storage class of the workspace of jobs granted exec "
                    "(default: --storage-class).",
                ),
            ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _engine(backend: str, namespace: str | None, **options: str | None) -> Engine:
    if backend != "kubernetes" and any(options.values()):
        used = ", ".join(f"--{k.replace('_', '-')}" for k, v in options.items() if v)
        raise click.UsageError(f"{used}: only with --backend kubernetes")
    return Engine(backend=backend, namespace=namespace, **options)


def _app(ctx: click.Context, json_: bool) -> App:
    app = ctx.ensure_object(App)
    if json_:
        app.out.json_mode = True
    return app


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".runner",
    show_default=True,
    envvar="RUNNER_STATE_DIR",
    help="Where runs, the ledger and keys are kept (never mounted into a step).",
)
@click.option(
    "--anchor-store",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RUNNER_ANCHOR_STORE",
    help="Where every run's final checkpoint is kept, out of the steps' and the ledger's "
    "reach (default: ~/.local/share/runner/anchors).",
)
@click.option("--json", "json_", is_flag=True, help="Print JSON for machines.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option(
    "--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True
)
@click.pass_context
def cli(
    ctx: click.Context,
    state_dir: Path,
    anchor_store: Path | None,
    json_: bool,
    debug: bool,
    color: Any,
) -> None:
    """Run GitHub-Actions-style missions, each step sealed in its own hardened container."""
    app = ctx.ensure_object(App)
    app.state_dir = state_dir
    app.anchor_store = anchor_store
    app.debug = debug
    app.out.json_mode = json_
    app.out.color = color
    if ctx.invoked_subcommand in KEY_WRITERS:
        app.check_state_dir()


# -- init / validate / plan ---------------------------------------------------------------


@cli.command()
@json_option
@click.pass_context
def init(ctx: click.Context, json_: bool) -> None:
    """Write a starter policy, tool catalog and mission here (never overwriting a file)."""
    from runner.commands import init as command

    ctx.exit(command.main(_app(ctx, json_)))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
@click.pass_context
def validate(ctx: click.Context, paths: tuple[Path, ...], json_: bool) -> None:
    """Check missions (default: every file in .missions/) and print every problem."""
    from runner.commands import validate as command

    ctx.exit(command.main(_app(ctx, json_), paths))


@cli.command()
@click.argument("mission", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "dot"]), default="text")
@trust_options
@match_options
@json_option
@click.pass_context
def plan(
    ctx: click.Context,
    mission: Path,
    fmt: str,
    trusted_ref: str | None,
    policy: Path | None,
    catalog: Path | None,
    event: str,
    ref: str | None,
    json_: bool,
) -> None:
    """Print a mission's expanded DAG: levels, matrix instances, images, tools, decisions."""
    from runner.commands import plan as command

    ctx.exit(
        command.main(
            _app(ctx, json_),
            mission,
            fmt=fmt,
            trust=Trust(trusted_ref, policy, catalog),
            event=event,
            ref=ref,
        )
    )


# -- run ----------------------------------------------------------------------------------


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=what)
        pairs[name] = rest
    return pairs


@cli.command()
@click.argument("missions", nargs=-1, type=click.Path(path_type=Path))
@match_options
@click.option("--job", "jobs", multiple=True, help="Run only these jobs (and what they need).")
@click.option("--input", "inputs", multiple=True, metavar="NAME=VALUE", help="A mission input.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME[=ENV_VAR]",
    help="Pass a secret from the invoker's environment (never a value).",
)
@click.option(
    "--secret-file", type=click.Path(dir_okay=False, path_type=Path), help="A dotenv file."
)
@trust_options
@click.option("--max-parallel", type=click.IntRange(min=1), help="Jobs running at once.")
@click.option("--retry-seed", type=int, help="Make retry jitter reproducible.")
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML report."
)
@engine_options(images=True)
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    missions: tuple[Path, ...],
    event: str,
    ref: str | None,
    jobs: tuple[str, ...],
    inputs: tuple[str, ...],
    secrets: tuple[str, ...],
    secret_file: Path | None,
    trusted_ref: str | None,
    policy: Path | None,
    catalog: Path | None,
    max_parallel: int | None,
    retry_seed: int | None,
    junit: Path | None,
    backend: str,
    namespace: str | None,
    image_registry: str | None,
    load_images: str | None,
    storage_class: str | None,
    exec_storage_class: str | None,
    json_: bool,
) -> None:
    """Run missions: validate, check the policy, then each step in its own container."""
    from runner.commands import run as command

    engine = _engine(
        backend,
        namespace,
        image_registry=image_registry,
        load_images=load_images,
        storage_class=storage_class,
        exec_storage_class=exec_storage_class,
    )

    ctx.exit(
        command.main(
            _app(ctx, json_),
            missions,
            event=event,
            ref=ref,
            jobs=jobs,
            inputs=_pairs(inputs, "--input"),
            secrets=secrets,
            secret_file=secret_file,
            trust=Trust(trusted_ref, policy, catalog),
            max_parallel=max_parallel,
            retry_seed=retry_seed,
            junit=junit,
            connector=_connector(engine),
        )
    )


def _connector(engine: Engine) -> Any:
    """The Kubernetes backend's connector, or None for Docker's. The Kubernetes client
    is imported only when it is chosen (about 0.5 s that a Docker run should not pay)."""
    if engine.backend != "kubernetes":
        return None
    from runner.commands import kubernetes_engine

    return kubernetes_engine.connector(engine)


# -- policy -------------------------------------------------------------------------------


@cli.group()
def policy() -> None:
    """Check missions against the default-deny policy; compare policies."""


@policy.command("check")
@click.argument("missions", nargs=-1, type=click.Path(path_type=Path))
@trust_options
@match_options
@click.option("--explain", is_flag=True, help="Say which rule allowed or why it denied.")
@json_option
@click.pass_context
def policy_check(
    ctx: click.Context,
    missions: tuple[Path, ...],
    trusted_ref: str | None,
    policy: Path | None,
    catalog: Path | None,
    event: str,
    ref: str | None,
    explain: bool,
    json_: bool,
) -> None:
    """Print the policy decisions for each job, without running anything."""
    from runner.commands import policy_check as command

    ctx.exit(
        command.main(
            _app(ctx, json_),
            missions,
            trust=Trust(trusted_ref, policy, catalog),
            event=event,
            ref=ref,
            explain=explain,
        )
    )


@policy.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def policy_diff(ctx: click.Context, old: Path, new: Path, json_: bool) -> None:
    """Print the RFC 6902 JSON Patch from OLD to NEW and what it grants and revokes."""
    from runner.commands import policy_diff as command

    ctx.exit(command.main(_app(ctx, json_), old, new))


# -- audit --------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Verify, inspect and export the signed audit ledger."""


@audit.command("verify")
@click.option(
    "--trusted-keys",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of trusted *.pub keys (default: policies/keys, or the --trusted-ref's).",
)
@click.option(
    "--trusted-ref",
    metavar="REF",
    help="Read policies/keys/ from this git ref (e.g. origin/main), not the working tree.",
)
@click.option(
    "--anchor",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint kept outside the runner's reach that the ledger must extend.",
)
@json_option
@click.pass_context
def audit_verify(
    ctx: click.Context,
    trusted_keys: Path | None,
    trusted_ref: str | None,
    anchor: Path | None,
    json_: bool,
) -> None:
    """Prove the ledger intact: every line, link, signature and checkpoint."""
    from runner.commands import audit_verify as command

    ctx.exit(
        command.main(
            _app(ctx, json_), trusted_keys=trusted_keys, trusted_ref=trusted_ref, anchor=anchor
        )
    )


@audit.command("show")
@click.option("--run", "run_id", help="Only this run's entries.")
@json_option
@click.pass_context
def audit_show(ctx: click.Context, run_id: str | None, json_: bool) -> None:
    """Print ledger entries."""
    from runner.commands import audit_show as command

    ctx.exit(command.main(_app(ctx, json_), run_id=run_id))


@audit.command("checkpoint")
@click.option(
    "--export",
    "export_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the latest checkpoint to FILE (an anchor).",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="Take on a ledger runner has no record of signing (copied, or written by an older "
    "runner), once `audit verify` passes on it.",
)
@json_option
@click.pass_context
def audit_checkpoint(ctx: click.Context, export_to: Path | None, adopt: bool, json_: bool) -> None:
    """Seal the ledger with a signed checkpoint; optionally export it as an anchor."""
    from runner.commands import audit_checkpoint as command

    ctx.exit(command.main(_app(ctx, json_), export_to=export_to, adopt=adopt))


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
@json_option
@click.pass_context
def audit_prove(ctx: click.Context, seq: int, json_: bool) -> None:
    """Print an inclusion proof of entry SEQ against the latest checkpoint."""
    from runner.commands import audit_prove as command

    ctx.exit(command.main(_app(ctx, json_), seq))


@audit.command("export")
@click.argument("run_id", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(["slsa"]), default="slsa", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@click.pass_context
def audit_export(ctx: click.Context, run_id: str, fmt: str, output: Path | None) -> None:
    """Export a run as an in-toto Statement with SLSA v1 provenance in a DSSE envelope."""
    from runner.commands import audit_export as command

    ctx.exit(command.main(ctx.ensure_object(App), run_id, fmt=fmt, output=output))


# -- keys ---------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Manage the Ed25519 signing key."""


@keys.command("init")
@json_option
@click.pass_context
def keys_init(ctx: click.Context, json_: bool) -> None:
    """Make a signing key (.runner/keys/) and trust its public half (policies/keys/)."""
    from runner.commands import keys as command

    ctx.exit(command.init(_app(ctx, json_)))


@keys.command("rotate")
@json_option
@click.pass_context
def keys_rotate(ctx: click.Context, json_: bool) -> None:
    """Replace the signing key; the ledger records it, signed by the old and the new."""
    from runner.commands import keys as command

    ctx.exit(command.rotate(_app(ctx, json_)))


# -- runs, logs, images, gc ---------------------------------------------------------------


@cli.command()
@json_option
@click.pass_context
def runs(ctx: click.Context, json_: bool) -> None:
    """List past runs."""
    from runner.commands import runs as command

    ctx.exit(command.main(_app(ctx, json_)))


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option("--job", help="Only this job's lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@json_option
@click.pass_context
def logs(ctx: click.Context, run_id: str, job: str | None, follow: bool, json_: bool) -> None:
    """Replay a run's redacted event log."""
    from runner.commands import logs as command

    ctx.exit(command.main(_app(ctx, json_), run_id, job=job, follow=follow))


@cli.group()
def images() -> None:
    """Build the images in containers/."""


@images.command("build")
@click.argument("names", nargs=-1)
@json_option
@click.pass_context
def images_build(ctx: click.Context, names: tuple[str, ...], json_: bool) -> None:
    """Build containers/<name>/Dockerfile images (all by default), tagged by content hash."""
    from runner.commands import images_build as command

    ctx.exit(command.main(_app(ctx, json_), names))


@cli.command()
@click.option("--older-than", help="Prune runs older than this (e.g. 7d, 12h).")
@click.option("--keep", type=click.IntRange(min=0), help="Keep this many newest runs.")
@click.option(
    "--cache-days",
    type=click.IntRange(min=0),
    help="Evict cache entries not used for this many days (default 7).",
)
@click.option(
    "--cache-max-size", help="Then evict the least recently used above this (default 10g)."
)
@engine_options(images=False)
@json_option
@click.pass_context
def gc(
    ctx: click.Context,
    older_than: str | None,
    keep: int | None,
    cache_days: int | None,
    cache_max_size: str | None,
    backend: str,
    namespace: str | None,
    json_: bool,
) -> None:
    """Remove containers and volumes of dead runs; prune old runs and caches (never the
    ledger)."""
    from runner.commands import gc as command

    connector = _connector(Engine(backend=backend, namespace=namespace))
    ctx.exit(
        command.main(
            _app(ctx, json_),
            older_than=older_than,
            keep=keep,
            cache_days=cache_days,
            cache_max_size=cache_max_size,
            connector=connector,
        )
    )


def main() -> None:
    app = App(state_dir=Path(".runner"), out=Output())
    code = 0
    try:
        with handle_errors(app.out, debug="--debug" in sys.argv, state_dir=lambda: app.state_dir):
            result = cli.main(obj=app, standalone_mode=False, prog_name="runner")
            code = result if isinstance(result, int) else 0
    except Exit as exc:
        code = exc.code
    sys.exit(code)
