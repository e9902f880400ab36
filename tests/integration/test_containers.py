"""Container recipes and CI: schema, agreement between recipes, and the built image itself.

Fast checks (always): the CircleCI config validates against CircleCI's published JSON
schema (vendored by check-jsonschema), scripts/ci_local.sh mirrors its steps, singularity.def
agrees with the Dockerfile (parsed with spython), and the image pins every dependency.
Slow checks (podman and a built image, see scripts/build_image.sh): ``--version``, a
non-root default user, an arbitrary ``--user``, and participant + group runs under
``--read-only``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("BRAINSCALE_IMAGE", "localhost/brainscale:latest")
RUNTIME_ONLY = re.compile(r"^(PIP_|BRAINSCALE_CONTAINER_TAG$)")


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """Parse a Dockerfile into stages of (INSTRUCTION, arguments), continuations joined."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for instruction, arguments in stage:
        if instruction == "ENV":
            for item in shlex.split(arguments):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def dockerfile_args(stages) -> dict[str, str]:
    args = {}
    for stage in stages:
        for instruction, arguments in stage:
            if instruction == "ARG" and "=" in arguments:
                key, _, value = arguments.partition("=")
                args[key] = value
    return args


@pytest.fixture(scope="module")
def singularity():
    parsers = pytest.importorskip("spython.main.parse.parsers")
    (recipe,) = parsers.SingularityParser(str(REPO / "singularity.def")).parse().values()
    return recipe


def test_singularity_def_agrees_with_dockerfile(singularity):
    stages = dockerfile_stages(REPO / "Dockerfile")
    final = stages[-1]
    docker_env = {k: v for k, v in dockerfile_env(final).items() if not RUNTIME_ONLY.match(k)}
    docker_env["PATH"] = docker_env["PATH"].replace("${PATH}", "$PATH")
    sing_env = {}
    for line in singularity.environ:
        key, _, value = line.removeprefix("export ").partition("=")
        sing_env[key] = value
    assert sing_env == docker_env

    args = dockerfile_args(stages)
    assert singularity.fromHeader == args["DEBIAN_IMAGE"]
    post = "\n".join(singularity.install)
    assert f"TORCH_VERSION={args['TORCH_VERSION']}" in post
    entrypoint = json.loads(dict(final)["ENTRYPOINT"])
    assert singularity.cmd.split()[:2] == ["exec", f"/opt/venv/bin/{entrypoint[0]}"]

    copied = {src for instruction, arguments in stages[1] if instruction == "COPY"
              for src in arguments.split()[:-1]}
    sing_files = {line.split()[0] for line in singularity.files}
    assert sing_files == copied
    docker_run = " ".join(a for i, a in final if i == "RUN")
    assert "-c /constraints.txt /wheels/*.whl boto3" in post
    assert "-c /wheels/constraints.txt /wheels/*.whl boto3" in docker_run
    for shared in ("import templateflow.api as tf", "atlas='Schaefer2018'",
                   "python3 python3-venv ca-certificates", "import brainscale.bids_app, brainscale.workflows, torch"):
        assert shared in post and shared in docker_run + " ".join(
            a for i, a in stages[1] if i == "RUN"), shared


def test_dockerfile_runs_read_only_as_any_user():
    stages = dockerfile_stages(REPO / "Dockerfile")
    final = dict(stages[-1])
    env = dockerfile_env(stages[-1])
    assert stages[1][0] == ("FROM", "${DEBIAN_IMAGE} AS build")
    assert dockerfile_args(stages)["DEBIAN_IMAGE"] == "debian:bookworm-slim"
    assert final["USER"] != "root"
    # every place a library writes to at run time is under the tmpfs /tmp
    for key in ("HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR"):
        assert env[key].startswith("/tmp"), key
    assert env["TEMPLATEFLOW_AUTOUPDATE"] == "0"
    assert env["PIP_FIND_LINKS"] == "" and env["PIP_CERT"] == ""  # build-only settings cleared
    assert '> /version' in final["RUN"]


def test_container_constraints_pin_every_runtime_dependency():
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lines = [line for line in (REPO / "scripts/container-constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = {}
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin: {line}"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    from packaging.requirements import Requirement

    for text in pyproject["project"]["dependencies"]:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name == "torch":  # pinned by the Dockerfile's TORCH_VERSION
            version = dockerfile_args(dockerfile_stages(REPO / "Dockerfile"))["TORCH_VERSION"]
        else:
            assert name in pins, f"{name} is not pinned in scripts/container-constraints.txt"
            version = pins[name]
        assert requirement.specifier.contains(version), f"{name}=={version} violates {text}"


def _circleci():
    return yaml.safe_load((REPO / ".circleci/config.yml").read_text())


def test_circleci_config_validates_against_circleci_schema(tmp_path):
    check = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(check).is_file():
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    command = [check, "--builtin-schema", "vendor.circle-ci"]
    ok = subprocess.run([*command, str(REPO / ".circleci/config.yml")], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = _circleci()
    broken["jobs"]["test"]["steps"] = {"run": "not a list"}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(broken))
    rejected = subprocess.run([*command, str(tmp_path / "config.yml")], capture_output=True)
    assert rejected.returncode != 0  # the schema check does catch a malformed config


def test_circleci_builds_caches_tests_and_deploys_only_tags():
    config = _circleci()
    jobs = config["jobs"]
    assert set(jobs) == {"build", "test", "deploy"}
    build_steps = json.dumps(jobs["build"]["steps"])
    assert "save_cache" in build_steps and "restore_cache" in build_steps
    test_commands = " ".join(s["run"]["command"] if isinstance(s["run"], dict) else s["run"]
                             for s in jobs["test"]["steps"] if isinstance(s, dict) and "run" in s)
    for expected in ("--version", " participant ", " group", "--read-only"):
        assert expected in test_commands
    flow = config["workflows"]["build-test-deploy"]["jobs"]
    deploy = next(j["deploy"] for j in flow if isinstance(j, dict) and "deploy" in j)
    assert deploy["requires"] == ["test"]
    assert deploy["filters"]["branches"]["ignore"] == "/.*/"
    tags = re.compile(deploy["filters"]["tags"]["only"].strip("/"))
    assert tags.match("v1.2.3") and not tags.match("latest")


def _named_steps(job) -> list[tuple[str, str]]:
    return [(s["run"]["name"], s["run"]["command"]) for s in job["steps"]
            if isinstance(s, dict) and isinstance(s.get("run"), dict) and "name" in s["run"]]


def _app_arguments(command: str) -> list[str]:
    """What is given to the image after its name in every 'docker run' of a command."""
    found = []
    for line in command.replace("\\\n", " ").splitlines():
        if "docker run" not in line:
            continue
        words = shlex.split(line, comments=True)
        for index, word in enumerate(words):
            if word.startswith("brainscale/brainscale:"):
                found.append(" ".join(words[index + 1:]))
    return found


def test_ci_local_mirrors_circleci_steps():
    jobs = _circleci()["jobs"]
    script = (REPO / "scripts/ci_local.sh").read_text()
    local_steps = re.findall(r'^\s*step "([^"]+)"', script, flags=re.MULTILINE)
    circle_steps = [name for job in ("build", "test") for name, _ in _named_steps(jobs[job])
                    if name != "Load cached image layers"]
    assert local_steps == circle_steps
    local_args = _app_arguments(script.replace('"${engine[@]}"', "docker").replace(
        '"$image"', "brainscale/brainscale:latest"))
    circle_args = [a for _, command in _named_steps(jobs["test"]) for a in _app_arguments(command)]
    local_args = [a.replace("${PARTICIPANT_ARGS:-}", "").strip() for a in local_args]
    assert local_args == circle_args


# ----------------------------------------------------------------- the built image (slow)

def _podman_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (see ../shared/RECIPES.md)"
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0:
        return f"image {IMAGE} not built: run scripts/build_image.sh (slow; once)"
    return None


def podman(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get(
        "CONTAINERS_CONF", str(_containers_conf()))}
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True,
                          check=check, env=env, **kwargs)


def _containers_conf() -> Path:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "brainscale-containers.conf"
    if not path.is_file():
        path.write_text("[containers]\ndefault_ulimits = []\n")
    return path


needs_image = pytest.mark.skipif(_podman_reason() is not None, reason=str(_podman_reason()))


@pytest.mark.slow
@needs_image
def test_image_version_user_and_read_only():
    from brainscale import __version__

    version = podman("run", "--rm", "--read-only", IMAGE, "--version")
    assert version.stdout.strip() == f"BrainScale {__version__}"
    whoami = podman("run", "--rm", "--read-only", "--entrypoint", "sh", IMAGE, "-c",
                    "id -u; cat /version; test -w /opt/venv && echo writable || echo protected")
    uid, image_version, venv = whoami.stdout.split()
    assert uid != "0" and image_version and venv == "protected"
    arbitrary = podman("run", "--rm", "--read-only", "--user", "43210:43210", IMAGE, "--version")
    assert arbitrary.stdout.strip() == f"BrainScale {__version__}"


#: Participant options of the container run: the real anatomical pipeline by default;
#: BRAINSCALE_CONTAINER_PARTICIPANT_ARGS=--reports-only checks only the read-only plumbing.
CONTAINER_PARTICIPANT_ARGS = os.environ.get("BRAINSCALE_CONTAINER_PARTICIPANT_ARGS",
                                            "--modalities anat").split()


@pytest.mark.slow
@needs_image
def test_image_participant_and_group_under_read_only(tmp_path, check_anat_outputs,
                                                     check_group_outputs):
    """Synthesize data in the container, then participant and group levels, all --read-only."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    user = f"{os.getuid() + 4321}:{os.getgid() + 4321}"  # a user the image does not know
    for folder in (data, out):
        folder.chmod(0o777)
    common = ["run", "--rm", "--read-only", "--user", user]
    podman(*common, "-v", f"{data}:/data", "--entrypoint", "brainscale", IMAGE, "synth",
           "/data/bids", "--subjects", "2", "--sites", "2", "--modalities", "anat")
    mounts = ["-v", f"{data / 'bids'}:/data:ro", "-v", f"{out}:/out"]
    participant = podman(*common, *mounts, IMAGE, "/data", "/out", "participant",
                         "--skip-bids-validation", *CONTAINER_PARTICIPANT_ARGS, check=False)
    assert participant.returncode == 0, participant.stderr[-3000:]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"]["Type"] == "docker"
    image_version = podman("run", "--rm", "--entrypoint", "cat", IMAGE, "/version").stdout.strip()
    assert description["GeneratedBy"][0]["Container"]["Tag"] == image_version
    labels = ["sub-01", "sub-02"]
    for label in labels:
        assert label in (out / f"{label}.html").read_text()
    group = podman(*common, *mounts, IMAGE, "/data", "/out", "group", check=False)
    if "--reports-only" in CONTAINER_PARTICIPANT_ARGS:
        # reports only leaves no participant derivatives: the group level says so (exit 66)
        assert group.returncode == 66, group.stderr[-3000:]
        assert "no participant derivatives (sub-*/) in /out" in group.stderr
        return
    assert group.returncode == 0, group.stderr[-3000:]
    check_anat_outputs(out, data / "bids", labels)
    check_group_outputs(out, labels)
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in out.rglob("*")}
    assert owners == {tuple(int(i) for i in user.split(":"))}  # written as the given user
