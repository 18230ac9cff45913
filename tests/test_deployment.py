"""Checks of the deployment files under docker/, which CI cannot build or start.

Each file must parse and every file it references must exist. Every version it
pins must equal requirements/constraints.txt and fall in the ranges of
pyproject.toml. Every command it runs must pass the real command-line parser of
the installed tool: ``python -m sweep.run``, ``ray start``, ``ray job submit``
and ``mlflow server``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPOSITORY = Path(__file__).resolve().parents[1]
DOCKER = REPOSITORY / "docker"
GPU_DOCKERFILE = DOCKER / "Dockerfile"
MLFLOW_DOCKERFILE = DOCKER / "mlflow.Dockerfile"
COMPOSE_FILE = DOCKER / "compose.yaml"
CLUSTER_FILE = DOCKER / "ray-cluster.yaml"
RAYJOB_FILE = DOCKER / "rayjob.yaml"
CONSTRAINTS_FILE = REPOSITORY / "requirements" / "constraints.txt"

# Values for the variables that compose.yaml requires, as a user would set them.
COMPOSE_ENVIRONMENT = {
    "RAY_AUTH_TOKEN": "token-for-tests",
    "POSTGRES_PASSWORD": "password-for-tests",
    "SEGSWEEP_DATA": "/srv/segsweep-data",
}
RAY_SERVICES = ("ray-head", "ray-worker", "sweep")

# Packages that deployment files pin although the package does not depend on them,
# so requirements/constraints.txt does not list them.
EXTERNAL_PINS = {
    "psycopg2-binary": "PostgreSQL driver of the MLflow server image",
    "boto3": "AWS SDK that the cluster launcher's autoscaler needs on the head node",
}

DOCKERFILE_KEYWORDS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip

# Field names of the KubeRay v1 Go types RayJobSpec, RayClusterSpec, HeadGroupSpec and
# WorkerGroupSpec (ray-operator/apis/ray/v1/rayjob_types.go and raycluster_types.go).
# The API server drops unknown fields of a custom resource without an error, so a
# misspelled field would silently fall back to its default.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule",
}  # fmt: skip
RAYCLUSTER_SPEC_FIELDS = {
    "upgradeStrategy", "authOptions", "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "historyServerOptions", "networkPolicy",
    "tlsOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs",
}  # fmt: skip
HEAD_GROUP_FIELDS = {
    "template", "headService", "enableIngress", "ingressOptions", "resources", "labels", "rayStartParams", "serviceType",
}  # fmt: skip
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "priority", "resources",
    "labels", "rayStartParams", "template", "scaleStrategy", "numOfHosts",
}  # fmt: skip


# ---------------------------------------------------------------------------
# Versions


def read_constraints() -> dict[str, Version]:
    """Return the exact pins of requirements/constraints.txt by canonical package name."""
    pins = {}
    for line in CONSTRAINTS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"constraints line {line!r} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def read_pyproject() -> dict[str, Any]:
    return tomllib.loads((REPOSITORY / "pyproject.toml").read_text())


def dependency_ranges() -> dict[str, SpecifierSet]:
    """Return the version range of every direct dependency in pyproject.toml."""
    ranges = {}
    for text in read_pyproject()["project"]["dependencies"]:
        requirement = Requirement(text)
        ranges[canonicalize_name(requirement.name)] = requirement.specifier
    return ranges


def package_version() -> str:
    return read_pyproject()["project"]["version"]


def paper_grid_space():
    """Return the study's search space, which builds without any data."""
    from search_spaces.paper_grid import build
    from sweep.spaces import SpaceContext

    return build(SpaceContext(data_root=None, dataset_paths={}, cache_dir=None, overrides={}))


# ---------------------------------------------------------------------------
# Dockerfiles


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions: comments dropped, ``\\`` continuations joined.

    Raises:
        ValueError: for an unknown keyword or a continuation at the end of the file.
    """
    instructions = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        # Comment lines are dropped, also between the continuation lines of one instruction.
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if continued:
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        if keyword.upper() not in DOCKERFILE_KEYWORDS:
            raise ValueError(f"{path.name}:{start}: unknown instruction {keyword!r}")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"{path.name}:{start}: the last instruction ends with a line continuation")
    return instructions


def base_image(instructions: list[Instruction]) -> str:
    """Return the image of the first FROM, without a stage name."""
    first = next(instruction for instruction in instructions if instruction.keyword == "FROM")
    return first.arguments.split()[0]


def dockerfile_environment(instructions: list[Instruction]) -> dict[str, str]:
    """Return the variables that ENV instructions set (both ``A=1`` and legacy ``A 1`` forms)."""
    environment = {}
    for instruction in instructions:
        if instruction.keyword != "ENV":
            continue
        tokens = shlex.split(instruction.arguments)
        if tokens and "=" not in tokens[0]:
            environment[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            name, _, value = token.partition("=")
            environment[name] = value
    return environment


def copy_sources(instructions: list[Instruction]) -> list[str]:
    """Return the build-context paths that COPY and ADD read (not those of other stages)."""
    sources = []
    for instruction in instructions:
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        text = instruction.arguments
        tokens = json.loads(text) if text.startswith("[") else shlex.split(text)
        if any(token.startswith("--from=") for token in tokens):
            continue
        paths = [token for token in tokens if not token.startswith("--")]
        assert len(paths) >= 2, f"line {instruction.line}: {instruction.keyword} needs a source and a destination"
        sources += paths[:-1]
    return sources


def read_dockerignore(dockerfile: Path, context: Path) -> list[str]:
    """Return the patterns of ``<Dockerfile>.dockerignore``, else of ``.dockerignore`` in the context."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            lines = (line.strip() for line in candidate.read_text().splitlines())
            return [line for line in lines if line and not line.startswith("#")]
    return []


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore rules: the last matching pattern wins and ``!`` re-includes.

    A pattern that matches a folder also matches everything below it.
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if any(pattern_matches(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def pattern_matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        return fnmatch.fnmatchcase(path, pattern[3:]) or fnmatch.fnmatchcase(path, "*/" + pattern[3:])
    return fnmatch.fnmatchcase(path, pattern)


# ---------------------------------------------------------------------------
# Shell commands and pip installs


SHELL_OPERATORS = {";", "&&", "||", "|", "&"}
PIP_OPTIONS_WITH_VALUE = {
    "-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
}  # fmt: skip


def split_shell(text: str) -> list[list[str]]:
    """Split a shell line into simple commands at ``;``, ``&&``, ``||``, ``|`` and ``&``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def program_arguments(tokens: list[str]) -> tuple[str, list[str]] | None:
    """Return the program name and its arguments. For ``python -m X`` the program is ``X``."""
    if not tokens:
        return None
    if Path(tokens[0]).name.startswith("python") and len(tokens) >= 3 and tokens[1] == "-m":
        return tokens[2], tokens[3:]
    return Path(tokens[0]).name, tokens[1:]


@dataclass(frozen=True)
class PipInstall:
    """One ``pip install``: its requirement specifiers, the constraints files it applies and its command."""

    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    command: str


def pip_installs(shell_text: str) -> list[PipInstall]:
    """Return every ``pip install`` of a shell line."""
    installs = []
    for command in split_shell(shell_text):
        parsed = program_arguments(command)
        if parsed is None or parsed[0] not in ("pip", "pip3") or parsed[1][:1] != ["install"]:
            continue
        arguments = parsed[1][1:]
        requirements, constraints = [], []
        index = 0
        while index < len(arguments):
            token = arguments[index]
            if token in PIP_OPTIONS_WITH_VALUE:
                if token in ("-c", "--constraint"):
                    constraints.append(arguments[index + 1])
                index += 2
                continue
            if token.startswith("--constraint="):
                constraints.append(token.partition("=")[2])
            elif not token.startswith("-"):
                requirements.append(token)
            index += 1
        installs.append(PipInstall(tuple(requirements), tuple(constraints), " ".join(command)))
    return installs


def named_requirements(install: PipInstall) -> list[Requirement]:
    """Return the requirements of an install that name a package (not a local folder)."""
    return [Requirement(text) for text in install.requirements if not text.startswith((".", "/"))]


# ---------------------------------------------------------------------------
# Real command-line parsers


def sweep_run_namespace(arguments: list[str]):
    """Parse ``python -m sweep.run`` arguments with the real parser, and fail the test on an error."""
    from sweep.run import build_parser

    parser = build_parser()
    parser.allow_abbrev = False
    try:
        return parser.parse_args(arguments)
    except SystemExit as error:
        pytest.fail(
            f"python -m sweep.run rejects {shlex.join(arguments)!r} with exit status {error.code}, see its message in stderr"
        )


def click_commands() -> dict[tuple[str, ...], click.Command]:
    from mlflow.cli import server
    from ray.dashboard.modules.job.cli import submit
    from ray.scripts.scripts import start, status, stop

    return {
        ("ray", "start"): start,
        ("ray", "stop"): stop,
        ("ray", "status"): status,
        ("ray", "job", "submit"): submit,
        ("mlflow", "server"): server,
    }


def check_command(tokens: list[str]) -> tuple[bool, str | None]:
    """Parse one command with its tool's real parser.

    Returns:
        Whether this test recognizes the program, and an error message or ``None``.
    """
    parsed = program_arguments(tokens)
    if parsed is None:
        return False, None
    program, arguments = parsed
    if program == "sweep.run":
        from sweep.run import build_parser

        parser = build_parser()
        # argparse accepts a unique prefix of an option by default. Deployment files spell every option out.
        parser.allow_abbrev = False
        try:
            parser.parse_args(arguments)
        except SystemExit as error:
            # --help exits with status 0, a rejected argument with status 2.
            if error.code not in (0, None):
                return True, f"python -m sweep.run rejects {shlex.join(arguments)}"
        return True, None
    for words, command in click_commands().items():
        if [program, *arguments[: len(words) - 1]] != list(words):
            continue
        rest = arguments[len(words) - 1 :]
        try:
            context = command.make_context(" ".join(words), list(rest))
        except click.ClickException as error:
            return True, f"{' '.join(words)} rejects {shlex.join(rest)}: {error.format_message()}"
        entrypoint = context.params.get("entrypoint")
        if words == ("ray", "job", "submit") and entrypoint:
            return check_command(list(entrypoint))
        return True, None
    return False, None


def sweep_run_arguments(text: str) -> Iterator[list[str]]:
    """Yield the arguments of every ``python -m sweep.run`` written in a text, comments included.

    The command ends at the end of its line, at a closing quote or at a shell operator.
    """
    for line in text.splitlines():
        index = line.find("python -m sweep.run")
        if index < 0:
            continue
        command = line[index:].strip().rstrip("\"'`")
        tokens = split_shell(command)[0]
        assert tokens[:3] == ["python", "-m", "sweep.run"], f"cannot read the command in line {line.strip()!r}"
        yield tokens[3:]


# ---------------------------------------------------------------------------
# Compose


COMPOSE_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(KeyError):
    """Raised when compose.yaml requires a variable (``${NAME:?message}``) that is not set."""


def interpolate(text: str, environment: Mapping[str, str]) -> str:
    """Substitute variables as Docker Compose does: ``${A}``, ``${A:-default}``, ``${A:?error}``, ``$$``."""

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = environment.get(name)
        operator, argument = match["operator"], match["argument"] or ""
        if operator == ":-":
            return value or argument
        if operator == "-":
            return argument if value is None else value
        if operator in (":?", "?") and (value is None or (operator == ":?" and not value)):
            raise MissingVariableError(f"{name}: {argument}")
        return value or ""

    return COMPOSE_VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, environment: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environment)
    if isinstance(node, list):
        return [interpolate_tree(item, environment) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, environment) for key, value in node.items()}
    return node


def load_compose(environment: Mapping[str, str] = COMPOSE_ENVIRONMENT) -> dict[str, Any]:
    return interpolate_tree(yaml.safe_load(COMPOSE_FILE.read_text()), environment)


def command_tokens(command: str | list[str]) -> list[list[str]]:
    """Return the commands of a compose ``command``: Compose splits a string like a shell, without running one."""
    return split_shell(command) if isinstance(command, str) else [list(command)]


def healthcheck_tokens(test: str | list[str]) -> list[list[str]]:
    if isinstance(test, str):
        return split_shell(test)
    if test[0] == "CMD-SHELL":
        return split_shell(test[1])
    if test[0] == "CMD":
        return [list(test[1:])]
    return []


@dataclass(frozen=True)
class Mount:
    """One entry of a service's ``volumes``."""

    source: str
    target: str
    read_only: bool

    @property
    def is_named_volume(self) -> bool:
        return bool(self.source) and not self.source.startswith(("/", ".", "~"))


def service_mounts(service: Mapping[str, Any]) -> list[Mount]:
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append(Mount(entry.get("source", ""), entry["target"], bool(entry.get("read_only", False))))
            continue
        parts = entry.split(":")
        if len(parts) == 1:
            mounts.append(Mount("", parts[0], False))
        else:
            mode = parts[2].split(",") if len(parts) > 2 else []
            mounts.append(Mount(parts[0], parts[1], "ro" in mode))
    return mounts


def option_value(arguments: list[str], option: str) -> str | None:
    """Return the value of ``--option value`` or ``--option=value``, or ``None``."""
    for index, token in enumerate(arguments):
        if token == option and index + 1 < len(arguments):
            return arguments[index + 1]
        if token.startswith(option + "="):
            return token.partition("=")[2]
    return None


def sweep_command(compose: Mapping[str, Any]) -> list[str]:
    """Return the ``python -m sweep.run`` arguments that the ``sweep`` service submits."""
    for tokens in command_tokens(compose["services"]["sweep"]["command"]):
        if tokens[:3] == ["ray", "job", "submit"]:
            entrypoint = tokens[tokens.index("--") + 1 :]
            assert entrypoint[:3] == ["python", "-m", "sweep.run"], f"the sweep job runs {shlex.join(entrypoint)}"
            return entrypoint[3:]
    pytest.fail("the sweep service does not submit a job with ray job submit")


def mlflow_server_arguments(compose: Mapping[str, Any]) -> list[str]:
    (tokens,) = command_tokens(compose["services"]["mlflow"]["command"])
    assert tokens[:2] == ["mlflow", "server"], f"the mlflow service runs {shlex.join(tokens)}"
    return tokens[2:]


# ---------------------------------------------------------------------------
# Tests: versions


def test_constraints_within_pyproject_ranges():
    pins = read_constraints()
    ranges = dependency_ranges()
    for name, specifier in ranges.items():
        assert name in pins, f"{name} is a dependency in pyproject.toml but has no pin in {CONSTRAINTS_FILE.name}"
        assert specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside pyproject.toml's {specifier}"
        )


def test_gpu_image_base_matches_torch_pin():
    image = base_image(parse_dockerfile(GPU_DOCKERFILE))
    match = re.fullmatch(
        r"pytorch/pytorch:(?P<torch>\d+\.\d+\.\d+)-cuda(?P<cuda>\d+\.\d+)-cudnn(?P<cudnn>\d+)-runtime", image
    )
    assert match, f"base image {image} is not an official pytorch/pytorch:<torch>-cuda<x.y>-cudnn<n>-runtime tag"
    torch_version = Version(match["torch"])
    assert torch_version == read_constraints()["torch"], (
        f"base image has torch {torch_version}, constraints pin {read_constraints()['torch']}"
    )
    assert dependency_ranges()["torch"].contains(torch_version)


def test_mlflow_image_matches_mlflow_pin():
    image = base_image(parse_dockerfile(MLFLOW_DOCKERFILE))
    match = re.fullmatch(r"ghcr\.io/mlflow/mlflow:v(?P<version>\d+\.\d+\.\d+)", image)
    assert match, f"MLflow base image {image} is not an official ghcr.io/mlflow/mlflow:v<version> tag"
    assert Version(match["version"]) == read_constraints()["mlflow"]
    assert dependency_ranges()["mlflow"].contains(Version(match["version"]))


def deployment_pip_installs() -> list[tuple[str, PipInstall]]:
    """Return every pip install of the Dockerfiles and of the launcher's commands, with its file."""
    installs = []
    for path in (GPU_DOCKERFILE, MLFLOW_DOCKERFILE):
        for instruction in parse_dockerfile(path):
            if instruction.keyword == "RUN":
                installs += [(path.name, install) for install in pip_installs(instruction.arguments)]
    cluster = yaml.safe_load(CLUSTER_FILE.read_text())
    for key, value in cluster.items():
        if key.endswith("_commands"):
            for line in value:
                installs += [(CLUSTER_FILE.name, install) for install in pip_installs(line)]
    return installs


def test_pip_installs_match_constraints():
    pins = read_constraints()
    installs = deployment_pip_installs()
    assert len(installs) >= 4, f"expected pip installs in both Dockerfiles and the launcher config, found {installs}"
    for source, install in installs:
        for requirement in named_requirements(install):
            name = canonicalize_name(requirement.name)
            exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            if name in pins:
                # Either the constraints file applies to this install, or the pin agrees with it.
                assert install.constraints or exact, (
                    f"{source}: {install.command!r} installs {name} without a version or constraints file"
                )
                for version in exact:
                    assert Version(version) == pins[name], (
                        f"{source}: {install.command!r} pins {name}=={version}, constraints pin {pins[name]}"
                    )
            else:
                assert name in EXTERNAL_PINS, (
                    f"{source}: {install.command!r} installs {name}, which {CONSTRAINTS_FILE.name} does not pin"
                )
                assert len(exact) == 1, f"{source}: {install.command!r} must pin {name} to one exact version"
        for path in install.constraints:
            assert path == "requirements/constraints.txt", f"{source}: {install.command!r} uses constraints {path}"


def test_local_installs_use_constraints():
    local = [(source, install) for source, install in deployment_pip_installs() if "." in install.requirements]
    assert local, "no pip install of this package (.) in the Dockerfiles"
    for source, install in local:
        assert install.constraints, (
            f"{source}: {install.command!r} installs the package without -c requirements/constraints.txt"
        )


def test_images_match_package_version():
    version = package_version()
    compose = load_compose()
    cluster = yaml.safe_load(CLUSTER_FILE.read_text())
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    images = {f"compose {name}": compose["services"][name]["image"] for name in RAY_SERVICES}
    images |= {
        f"ray-cluster docker.{key}": cluster["docker"][key]
        for key in ("image", "head_image", "worker_image")
        if key in cluster["docker"]
    }
    for label, template in rayjob_pod_templates(rayjob):
        images |= {
            f"rayjob {label} {container['name']}": container["image"] for container in template["spec"]["containers"]
        }
    assert len(images) >= 6
    for label, image in images.items():
        match = re.fullmatch(r"(?:.+/)?segsweep:(?P<version>[^:/]+)", image)
        assert match, f"{label}: image {image} is not a segsweep image"
        assert match["version"] == version, f"{label}: image {image} does not carry the package version {version}"
    mlflow_tag = compose["services"]["mlflow"]["image"].rsplit(":", 1)[1]
    assert Version(mlflow_tag) == read_constraints()["mlflow"], (
        f"the MLflow server image tag {mlflow_tag} is not the mlflow pin"
    )


def test_ray_versions_match_pin():
    ray_pin = read_constraints()["ray"]
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    assert Version(str(rayjob["spec"]["rayClusterSpec"]["rayVersion"])) == ray_pin
    # Any official Ray image named in a deployment file must be the pinned release too.
    for path in sorted(DOCKER.iterdir()):
        if path.is_file():
            for match in re.finditer(r"rayproject/ray(?:-ml)?:(?P<version>\d+\.\d+\.\d+)", path.read_text()):
                assert Version(match["version"]) == ray_pin, (
                    f"{path.name} names {match[0]}, but ray is pinned to {ray_pin}"
                )


# ---------------------------------------------------------------------------
# Tests: Dockerfiles


@pytest.mark.parametrize("path", [GPU_DOCKERFILE, MLFLOW_DOCKERFILE], ids=lambda path: path.name)
def test_dockerfile_parses(path):
    instructions = parse_dockerfile(path)
    keywords = [instruction.keyword for instruction in instructions]
    assert keywords, f"{path.name} has no instructions"
    assert next(keyword for keyword in keywords if keyword != "ARG") == "FROM", f"{path.name} does not start with FROM"
    for instruction in instructions:
        if instruction.keyword in ("CMD", "ENTRYPOINT") and instruction.arguments.startswith("["):
            assert isinstance(json.loads(instruction.arguments), list)


def compose_builds() -> list[tuple[str, Path, Path]]:
    """Return (service, build context, Dockerfile) of every service that compose.yaml builds."""
    builds = []
    for name, service in load_compose()["services"].items():
        build = service.get("build")
        if build is None:
            continue
        context = (DOCKER / (build if isinstance(build, str) else build.get("context", "."))).resolve()
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        builds.append((name, context, dockerfile))
    return builds


def test_compose_build_files_exist():
    builds = compose_builds()
    assert {dockerfile.name for _, _, dockerfile in builds} == {GPU_DOCKERFILE.name, MLFLOW_DOCKERFILE.name}
    for service, context, dockerfile in builds:
        assert context.is_dir(), f"service {service}: build context {context} does not exist"
        assert dockerfile.is_file(), f"service {service}: Dockerfile {dockerfile} does not exist"


def test_copy_sources_exist_in_context():
    checked = 0
    for service, context, dockerfile in compose_builds():
        patterns = read_dockerignore(dockerfile, context)
        for source in copy_sources(parse_dockerfile(dockerfile)):
            path = context / source
            assert path.exists(), f"{dockerfile.name} (service {service}) copies {source}, which is not in {context}"
            files = (
                [path]
                if path.is_file()
                else [file for file in path.rglob("*") if file.is_file() and "__pycache__" not in file.parts]
            )
            assert files, f"{dockerfile.name} copies the empty folder {source}"
            for file in files:
                relative = file.relative_to(context).as_posix()
                assert not is_ignored(relative, patterns), (
                    f"{dockerfile.name} copies {relative}, but its .dockerignore leaves it out"
                )
            checked += 1
    assert checked >= 5


def test_dockerignore_leaves_out_local_state():
    patterns = read_dockerignore(GPU_DOCKERFILE, REPOSITORY)
    assert patterns, "docker/Dockerfile.dockerignore is missing"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "sweeps/x/segsweep.json",
        "mlflow.db",
        "mlartifacts/1/x",
        "tests/conftest.py",
    ):
        assert is_ignored(path, patterns), f"the build context of docker/Dockerfile includes {path}"


def test_gpu_image_environment():
    environment = dockerfile_environment(parse_dockerfile(GPU_DOCKERFILE))
    assert environment.get("MLFLOW_DISABLE_TELEMETRY") == "true"
    assert environment.get("RAY_USAGE_STATS_ENABLED") == "0"
    for variable in ("SEGSWEEP_DATA_ROOT", "SEGSWEEP_CACHE_DIR", "SEGSWEEP_WEIGHTS_DIR"):
        assert environment.get(variable, "").startswith("/"), f"the image sets no absolute {variable}"


def test_gpu_image_prefetches_study_encoders():
    from segcore.models.weights import hub_location

    instructions = parse_dockerfile(GPU_DOCKERFILE)
    arguments = [instruction.arguments for instruction in instructions if instruction.keyword == "ARG"]
    encoders_argument = next(text for text in arguments if text.startswith("ENCODERS="))
    encoders = shlex.split(encoders_argument.partition("=")[2])[0].split()
    for encoder in encoders:
        hub_location(encoder)  # raises for an encoder without ImageNet weights
    (study,) = paper_grid_space().studies
    study_encoders = set(study.param_space["encoder"]["grid_search"])
    assert study_encoders <= set(encoders), (
        f"the image leaves out the weights of {sorted(study_encoders - set(encoders))}"
    )

    fetch_runs = [
        instruction.arguments for instruction in instructions if "segcore.models.weights fetch" in instruction.arguments
    ]
    assert fetch_runs, "the image does not run python -m segcore.models.weights fetch"
    help_text = subprocess.run(
        [sys.executable, "-m", "segcore.models.weights", "fetch", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
    ).stdout
    for option in re.findall(r"(--[a-z][a-z-]+)", fetch_runs[0]):
        assert option in help_text, f"python -m segcore.models.weights fetch has no option {option}"


# ---------------------------------------------------------------------------
# Tests: compose


def test_compose_services():
    services = load_compose()["services"]
    assert {"postgres", "mlflow", "ray-head", "ray-worker", "sweep"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, f"service {name} has neither image nor build"


def test_compose_requires_secrets():
    for variable in COMPOSE_ENVIRONMENT:
        environment = {key: value for key, value in COMPOSE_ENVIRONMENT.items() if key != variable}
        with pytest.raises(MissingVariableError, match=variable):
            load_compose(environment)


def test_compose_references_are_defined():
    compose = load_compose()
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    networks = set(compose.get("networks") or {}) | {"default"}
    used_volumes = set()
    for name, service in services.items():
        for mount in service_mounts(service):
            if mount.is_named_volume:
                assert mount.source in volumes, f"service {name} mounts volume {mount.source}, which is not declared"
                used_volumes.add(mount.source)
            elif mount.source.startswith("."):
                assert (DOCKER / mount.source).exists(), (
                    f"service {name} bind-mounts {mount.source}, which does not exist"
                )
        for network in service.get("networks") or []:
            assert network in networks, f"service {name} joins network {network}, which is not declared"
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"service {name} depends on {dependency}, which is not a service"
    assert volumes == used_volumes, f"declared but unused volumes: {sorted(volumes - used_volumes)}"


def test_compose_gpu_worker_reserves_gpus():
    worker = load_compose()["services"]["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", []) for device in devices)


def test_compose_ray_nodes_share_storage():
    compose = load_compose()
    services = compose["services"]
    arguments = sweep_command(compose)
    storage_path = option_value(arguments, "--storage-path")
    data_root = option_value(arguments, "--data-root")
    assert storage_path, f"the sweep command sets no --storage-path: {arguments}"
    assert data_root, f"the sweep command sets no --data-root: {arguments}"
    # Two Ray nodes share the storage path only through one volume mounted at that path on both.
    volumes = set()
    for name in ("ray-head", "ray-worker"):
        mounts = {mount.target: mount for mount in service_mounts(services[name])}
        assert storage_path in mounts, f"{name} does not mount the storage path {storage_path}"
        assert mounts[storage_path].is_named_volume
        volumes.add(mounts[storage_path].source)
        assert data_root in mounts, f"{name} does not mount the data root {data_root}"
        assert mounts[data_root].read_only, f"{name} mounts the data root {data_root} writable"
    assert len(volumes) == 1, f"the Ray nodes mount different volumes at {storage_path}: {volumes}"
    # The sweep cannot distinguish a local Docker volume from a local disk, so the command must declare it shared.
    assert "--shared-storage" in arguments


def test_compose_ray_token_on_every_node():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name in RAY_SERVICES:
        environment = raw["services"][name]["environment"]
        assert environment.get("RAY_AUTH_MODE") == "token", f"{name} does not enable Ray token authentication"
        assert re.fullmatch(r"\$\{RAY_AUTH_TOKEN(:\?[^}]*)?\}", environment.get("RAY_AUTH_TOKEN", "")), (
            f"{name} does not take RAY_AUTH_TOKEN from the environment"
        )
    tokens = {raw["services"][name]["environment"]["RAY_AUTH_TOKEN"] for name in RAY_SERVICES}
    assert len(tokens) == 1, f"the Ray services read different tokens: {tokens}"


def test_compose_tracking_uri_reaches_server():
    from mlflow.server.security_utils import is_allowed_host_header

    compose = load_compose()
    services = compose["services"]
    server = mlflow_server_arguments(compose)
    port = option_value(server, "--port")
    allowed_hosts = option_value(server, "--allowed-hosts")
    assert port, f"the mlflow server command sets no --port: {server}"
    assert allowed_hosts, f"the mlflow server command sets no --allowed-hosts: {server}"
    uris = {option_value(sweep_command(compose), "--tracking-uri")}
    uris |= {services[name]["environment"]["MLFLOW_TRACKING_URI"] for name in RAY_SERVICES}
    for uri in uris:
        parsed = urlparse(uri)
        assert parsed.hostname in services, f"tracking URI {uri} does not name a compose service"
        assert parsed.hostname == "mlflow"
        assert str(parsed.port) == port, f"tracking URI {uri} does not use the server's port {port}"
        # The same check the server applies to the Host header of every request.
        assert is_allowed_host_header(allowed_hosts.split(","), parsed.netloc), (
            f"mlflow server answers 403 to Host {parsed.netloc}"
        )
    for browser_host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert is_allowed_host_header(allowed_hosts.split(","), browser_host)


def test_compose_mlflow_backend_is_postgres():
    compose = load_compose()
    services = compose["services"]
    server = mlflow_server_arguments(compose)
    backend = urlparse(option_value(server, "--backend-store-uri") or "")
    assert backend.scheme.startswith("postgresql"), f"the MLflow backend store is {backend.geturl()}, not PostgreSQL"
    assert backend.hostname == "postgres"
    assert backend.hostname in services
    postgres = services["postgres"]["environment"]
    assert backend.username == postgres["POSTGRES_USER"]
    assert backend.password == postgres["POSTGRES_PASSWORD"]
    assert backend.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert "postgres" in services["mlflow"]["depends_on"]

    destination = option_value(server, "--artifacts-destination")
    mounts = {mount.target: mount for mount in service_mounts(services["mlflow"])}
    assert destination in mounts, f"--artifacts-destination {destination} is not mounted in the mlflow service"
    assert mounts[destination].is_named_volume, f"--artifacts-destination {destination} is not on a named volume"
    assert "--no-serve-artifacts" not in server


def test_compose_commands_parse():
    compose = load_compose()
    checked = 0
    for name, service in compose["services"].items():
        commands = command_tokens(service["command"]) if "command" in service else []
        if "healthcheck" in service:
            commands += healthcheck_tokens(service["healthcheck"]["test"])
        for tokens in commands:
            known, error = check_command(tokens)
            assert error is None, f"service {name}: {error}"
            checked += known
    assert checked >= 5, f"only {checked} commands of compose.yaml were parsed"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_compose_config():
    """Validate compose.yaml with ``docker compose config`` where the Compose plugin is installed."""
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        pytest.skip(f"docker compose is not installed: {version.stderr.strip()}")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, **COMPOSE_ENVIRONMENT},
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------
# Tests: Ray cluster launcher


def test_cluster_config_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER_FILE.read_text())
    validate_config(prepare_config(config))


def test_cluster_validation_rejects_misspelled_key():
    """The launcher validator rejects unknown keys, so the check above can fail."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER_FILE.read_text())
    config["docker"]["run_option"] = config["docker"]["run_options"]
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


def test_cluster_setup_keeps_image_ray():
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(yaml.safe_load(CLUSTER_FILE.read_text()))
    for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands"):
        for line in config[key]:
            for install in pip_installs(line):
                names = {canonicalize_name(requirement.name) for requirement in named_requirements(install)}
                assert "ray" not in names, f"{key} reinstalls Ray over the image's pinned release: {line}"


def test_cluster_gpu_worker_fits_trial():
    config = yaml.safe_load(CLUSTER_FILE.read_text())
    space = paper_grid_space()
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    workers = [node for name, node in node_types.items() if name != config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_workers = [node for node in workers if node["resources"].get("GPU", 0) >= space.resources["gpu"]]
    assert gpu_workers, "no worker node type has a GPU"
    for node in gpu_workers:
        assert node["resources"]["CPU"] >= space.resources["cpu"], (
            f"{node['node_config']['InstanceType']} has too few CPUs for one trial"
        )
        assert node["max_workers"] >= 1


def test_cluster_token_reaches_every_node():
    config = yaml.safe_load(CLUSTER_FILE.read_text())
    options = " ".join(config["docker"]["run_options"])
    assert "RAY_AUTH_MODE=token" in options
    match = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", options)
    assert match, "the containers get no RAY_AUTH_TOKEN_PATH"
    assert match[1] in config["file_mounts"], f"the token file {match[1]} is not among the file_mounts"
    for remote, local in config["file_mounts"].items():
        if not local.startswith(("/", "~")):
            assert (REPOSITORY / local).exists(), f"file_mounts {remote}: {local} does not exist in the repository"


def test_cluster_commands_parse():
    config = yaml.safe_load(CLUSTER_FILE.read_text())
    checked = 0
    for key in ("head_start_ray_commands", "worker_start_ray_commands", "setup_commands", "head_setup_commands"):
        for line in config[key]:
            for tokens in split_shell(line):
                known, error = check_command(tokens)
                assert error is None, f"{key}: {error}"
                checked += known
    assert checked >= 4


# ---------------------------------------------------------------------------
# Tests: KubeRay RayJob


def rayjob_pod_templates(rayjob: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = [("head", cluster["headGroupSpec"]["template"])]
    templates += [(f"worker group {group['groupName']}", group["template"]) for group in cluster["workerGroupSpecs"]]
    return templates


def test_rayjob_required_fields():
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rayjob["metadata"]["name"]), (
        "metadata.name is not a DNS-1123 label"
    )
    spec = rayjob["spec"]
    assert spec["entrypoint"].startswith("python -m sweep.run ")
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["workerGroupSpecs"], "the RayJob has no worker group"
    for label, template in rayjob_pod_templates(rayjob):
        containers = template["spec"]["containers"]
        assert containers, f"{label} has no container"
        assert all(container.get("image") for container in containers), f"{label}: a container has no image"


def test_rayjob_fields_are_known():
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    spec = rayjob["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, f"unknown RayJob spec fields: {sorted(set(spec) - RAYJOB_SPEC_FIELDS)}"
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= RAYCLUSTER_SPEC_FIELDS, (
        f"unknown rayClusterSpec fields: {sorted(set(cluster) - RAYCLUSTER_SPEC_FIELDS)}"
    )
    head = cluster["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS, f"unknown headGroupSpec fields: {sorted(set(head) - HEAD_GROUP_FIELDS)}"
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, (
            f"unknown fields of worker group {group['groupName']}: {sorted(set(group) - WORKER_GROUP_FIELDS)}"
        )
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob_gpu_workers_fit_trial():
    space = paper_grid_space()
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    gpu_containers = []
    for label, template in rayjob_pod_templates(rayjob):
        if not label.startswith("worker"):
            continue
        for container in template["spec"]["containers"]:
            limits = container["resources"]["limits"]
            if int(limits.get("nvidia.com/gpu", 0)) >= space.resources["gpu"]:
                gpu_containers.append(container)
                assert float(limits["cpu"]) >= space.resources["cpu"], (
                    f"{label}: CPU limit {limits['cpu']} is below one trial's request"
                )
    assert gpu_containers, "no worker container has an nvidia.com/gpu limit"


def test_rayjob_volume_mounts_defined():
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    for label, template in rayjob_pod_templates(rayjob):
        volumes = {volume["name"] for volume in template["spec"].get("volumes", [])}
        mounts = {
            mount["name"] for container in template["spec"]["containers"] for mount in container.get("volumeMounts", [])
        }
        assert mounts <= volumes, f"{label}: volume mounts without a volume: {sorted(mounts - volumes)}"
        assert "/data" in {
            mount["mountPath"]
            for container in template["spec"]["containers"]
            for mount in container.get("volumeMounts", [])
        }


def test_rayjob_start_params_are_ray_flags():
    rayjob = yaml.safe_load(RAYJOB_FILE.read_text())
    cluster = rayjob["spec"]["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"])] + [
        (group["groupName"], group) for group in cluster["workerGroupSpecs"]
    ]
    for label, group in groups:
        arguments = [f"--{key}={value}" for key, value in (group.get("rayStartParams") or {}).items()]
        head = ["--head"] if label == "head" else ["--address=head:6379"]
        known, error = check_command(["ray", "start", *head, *arguments])
        assert known
        assert error is None, f"rayStartParams of {label}: {error}"


# ---------------------------------------------------------------------------
# Tests: sweep commands in every deployment file


def deployment_texts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(DOCKER.iterdir()) if path.is_file()}


def test_sweep_commands_parse():
    from sweep.spaces import available_spaces

    found = {}
    for name, text in deployment_texts().items():
        if name == COMPOSE_FILE.name:
            text = interpolate(text, COMPOSE_ENVIRONMENT)
        for arguments in sweep_run_arguments(text):
            found[name] = found.get(name, 0) + 1
            if arguments == ["--help"]:
                continue
            namespace = sweep_run_namespace(arguments)
            assert namespace.space in available_spaces(), f"{name}: unknown space {namespace.space}"
            if namespace.address:
                # A sweep that joins a cluster needs storage that every node reaches.
                assert "://" in namespace.storage_path or namespace.shared_storage, (
                    f"{name}: {shlex.join(arguments)} keeps checkpoints on one node"
                )
                assert namespace.tracking_uri, f"{name}: {shlex.join(arguments)} sets no --tracking-uri"
                assert namespace.tracking_uri.startswith("http"), (
                    f"{name}: trials on other nodes cannot reach {namespace.tracking_uri}"
                )
                assert namespace.data_root, f"{name}: {shlex.join(arguments)} sets no --data-root"
    for path in (COMPOSE_FILE, CLUSTER_FILE, RAYJOB_FILE):
        assert found.get(path.name), f"{path.name} runs no python -m sweep.run"


def test_dockerfile_command_parses():
    instructions = parse_dockerfile(GPU_DOCKERFILE)
    (command,) = [instruction for instruction in instructions if instruction.keyword == "CMD"]
    known, error = check_command(json.loads(command.arguments))
    assert known, f"CMD runs an unrecognized program: {command.arguments}"
    assert error is None, error
