"""Static checks of infra/Dockerfile (``docker build`` cannot run here).

A tiny parser turns the file into instructions (continuation lines joined, comments and parser
directives dropped, ``${VAR}`` resolved from ARG defaults), and the tests assert what the cluster
configs rely on: known instructions only, a pinned base image, a non-root USER before CMD, the
project installed, Ray and torch at the versions pyproject.toml pins, no secrets or exposed ports,
and the image tag in infra/IMAGE referenced by every cluster config. Negative tests run the same
checks on small broken Dockerfiles to show they can fail.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
CLUSTER_FILES = [
    ROOT / "cluster.yaml",
    ROOT / "infra" / "cluster-gcp.yaml",
    ROOT / "infra" / "kuberay" / "raycluster.yaml",
    ROOT / "infra" / "kuberay" / "rayjob.yaml",
    ROOT / "infra" / "kuberay" / "raycronjob.yaml",
]
KNOWN_INSTRUCTIONS = {
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments (parser directives too), also within continuations
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, args = full.partition(" ")
            instructions.append((word.upper(), args.strip()))
    if pending.strip():
        word, _, args = pending.strip().partition(" ")
        instructions.append((word.upper(), args.strip()))
    return instructions


def arg_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for name, args in instructions:
        if name == "ARG" and "=" in args:
            key, value = args.split("=", 1)
            defaults.setdefault(key.strip(), value.strip().strip('"'))
    return defaults


def substitute(value: str, variables: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        key = m.group(1) or m.group(2)
        assert key in variables, f"${key} has no ARG default"
        return variables[key]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, value)


def base_image(instructions: list[tuple[str, str]]) -> str:
    """The last stage's FROM image, ARGs resolved."""
    froms = [args for name, args in instructions if name == "FROM"]
    assert froms, "no FROM"
    words = [w for w in froms[-1].split() if not w.startswith("--")]
    return substitute(words[0], arg_defaults(instructions))


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def check_known_instructions(instructions: list[tuple[str, str]]) -> None:
    unknown = [name for name, _ in instructions if name not in KNOWN_INSTRUCTIONS]
    assert not unknown, f"unknown Dockerfile instructions: {unknown}"
    assert instructions and instructions[0][0] in {"FROM", "ARG"}, "must start with ARG/FROM"


def check_base_pinned(instructions: list[tuple[str, str]]) -> None:
    image = base_image(instructions)
    if "@sha256:" in image:
        return
    name_tag = image.rsplit("/", 1)[-1]
    assert ":" in name_tag, f"base image {image} has no tag"
    tag = name_tag.split(":", 1)[1]
    assert tag and tag != "latest", f"base image {image} is not pinned"


def check_non_root_user(instructions: list[tuple[str, str]]) -> None:
    names = [name for name, _ in instructions]
    last_from = max(i for i, n in enumerate(names) if n == "FROM")
    stage = instructions[last_from:]
    launch = [i for i, (n, _) in enumerate(stage) if n in {"CMD", "ENTRYPOINT"}]
    assert launch, "no CMD or ENTRYPOINT"
    users = [args for n, args in stage[: launch[-1]] if n == "USER"]
    assert users, "no USER before CMD/ENTRYPOINT: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"USER {users[-1]} is root"


def check_project_installed(instructions: list[tuple[str, str]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = sorted({p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]})
    copied = " ".join(args for name, args in instructions if name in {"COPY", "ADD"})
    for needed in ["pyproject.toml", "README.md", "conf", *packages]:
        assert re.search(rf"(^|\s|/){re.escape(needed)}(\s|/|$)", copied), f"{needed} not copied"
    runs = [args for name, args in instructions if name == "RUN"]
    assert any(re.search(r"pip install\b[^&;]*\s(-e\s+)?\.(\s|$)", r) for r in runs), (
        "no RUN installs the copied project (pip install . / pip install -e .)"
    )
    assert any(name == "WORKDIR" for name, _ in instructions), "no WORKDIR"


def check_ray_version(instructions: list[tuple[str, str]]) -> None:
    defaults = arg_defaults(instructions)
    assert "RAY_VERSION" in defaults, "no ARG RAY_VERSION=<version>"
    version = defaults["RAY_VERSION"]
    assert ray_requirement().specifier.contains(version), f"Ray {version} vs pyproject"
    image = base_image(instructions)
    assert image.startswith("rayproject/ray:") and image.split(":", 1)[1].startswith(
        f"{version}-"
    ), f"base image {image} does not carry Ray {version}"
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert re.search(r"ray\[[^\]]*\]==\$\{?RAY_VERSION\}?", runs), "pip does not pin ray"


def check_python_and_torch(instructions: list[tuple[str, str]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    image = base_image(instructions)
    assert "-py311" in image, f"{image} is not the Python 3.11 flavour"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains("3.11")
    defaults = arg_defaults(instructions)
    torch = defaults.get("TORCH_VERSION")
    assert torch, "no ARG TORCH_VERSION=<version>"
    deps = [Requirement(d) for d in pyproject["project"]["dependencies"]]
    torch_req = next(r for r in deps if r.name == "torch")
    assert torch_req.specifier.contains(torch), f"torch {torch} outside pyproject's {torch_req}"
    makefile = (ROOT / "Makefile").read_text()
    makefile_pin = re.search(r"^TORCH \?= torch==(\S+) torchvision==(\S+)", makefile, re.M)
    assert makefile_pin and makefile_pin.group(1) == torch, "torch differs from the Makefile pin"
    vision = defaults.get("TORCHVISION_VERSION")
    assert vision == makefile_pin.group(2), "torchvision differs from the Makefile pin"
    vision_req = next(r for r in deps if r.name == "torchvision")
    assert vision_req.specifier.contains(vision), f"torchvision outside pyproject's {vision_req}"
    assert re.search(r"/whl/cu\d+", defaults.get("TORCH_INDEX_URL", "")), "no CUDA torch index"
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert re.search(r"--index-url\s+\"?\$\{?TORCH_INDEX_URL\}?", runs), "index ARG unused"


def check_no_secrets_or_ports(instructions: list[tuple[str, str]]) -> None:
    for name, args in instructions:
        if name in {"ARG", "ENV"}:
            keys = re.findall(r"(?:^|\s)(\w+)(?==|\s|$)", args)
            assert not [k for k in keys if SECRET_NAME.search(k)], f"{name} {args}"
        assert name != "EXPOSE", "the image exposes ports"
        assert "RAY_AUTH_TOKEN" not in args, "an auth token is baked into the image"


CHECKS = [
    check_known_instructions,
    check_base_pinned,
    check_non_root_user,
    check_project_installed,
    check_ray_version,
    check_python_and_torch,
    check_no_secrets_or_ports,
]


def ray_requirement() -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in deps if Requirement(d).name == "ray")


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_dockerfile(check) -> None:
    check(parse_dockerfile(DOCKERFILE.read_text()))


def test_parser_joins_continuations_and_drops_comments() -> None:
    text = "# syntax=docker/dockerfile:1\nFROM a:1\nRUN echo 1 \\\n    # a comment\n    && echo 2\n"
    assert parse_dockerfile(text) == [("FROM", "a:1"), ("RUN", "echo 1 && echo 2")]


def images_in(doc) -> list[str]:
    """Every ``image`` value in a config (docker.image, containers[].image, ...)."""
    found = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in {"image", "head_image", "worker_image"} and isinstance(value, str):
                found.append(value)
            else:
                found += images_in(value)
    elif isinstance(doc, list):
        for item in doc:
            found += images_in(item)
    return found


def test_image_tag_is_what_every_cluster_config_runs() -> None:
    tag = (ROOT / "infra" / "IMAGE").read_text().strip()
    assert len((ROOT / "infra" / "IMAGE").read_text().strip().splitlines()) == 1
    assert ":" in tag.rsplit("/", 1)[-1] and not tag.endswith(":latest"), tag
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    ray_version = arg_defaults(instructions)["RAY_VERSION"]
    assert f"ray{ray_version}" in tag and "py311" in tag, tag
    for path in CLUSTER_FILES:
        images = images_in(yaml.safe_load(path.read_text()))
        assert images, f"{path.name} names no image"
        assert set(images) == {tag}, f"{path.name}: {set(images)} != {{{tag}}}"


GOOD = (
    "ARG RAY_VERSION=2.60.0\n"
    "FROM rayproject/ray:${RAY_VERSION}-py311-cu128\n"
    "ARG TORCH_VERSION=2.14.1\n"
    "ARG TORCHVISION_VERSION=0.29.1\n"
    "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128\n"
    "USER 1000:100\n"
    "WORKDIR /home/ray/sennflow\n"
    'RUN pip install --index-url "${TORCH_INDEX_URL}" torch==${TORCH_VERSION}\n'
    "COPY pyproject.toml README.md ./\n"
    "COPY components ./components\nCOPY tasks ./tasks\nCOPY flows ./flows\n"
    "COPY sennflow ./sennflow\nCOPY ops ./ops\nCOPY conf ./conf\n"
    'RUN pip install -e . "ray[default]==${RAY_VERSION}"\n'
    'CMD ["sennflow"]\n'
)
BROKEN = [
    (check_known_instructions, GOOD.replace("WORKDIR", "WORKINGDIR")),
    (check_base_pinned, GOOD.replace("${RAY_VERSION}-py311-cu128", "latest")),
    (check_base_pinned, GOOD.replace("rayproject/ray:${RAY_VERSION}-py311-cu128", "ubuntu")),
    (check_non_root_user, GOOD.replace("USER 1000:100", "USER root")),
    (check_non_root_user, GOOD.replace('CMD ["sennflow"]\n', 'USER 0\nCMD ["sennflow"]\n')),
    (check_non_root_user, GOOD.replace("USER 1000:100\n", "")),
    (check_project_installed, GOOD.replace("pip install -e . ", "pip install ")),
    (check_project_installed, GOOD.replace("COPY conf ./conf\n", "")),
    (check_ray_version, GOOD.replace("RAY_VERSION=2.60.0", "RAY_VERSION=2.59.0")),
    (check_ray_version, GOOD.replace('"ray[default]==${RAY_VERSION}"', "ray")),
    (check_python_and_torch, GOOD.replace("py311", "py312")),
    (check_python_and_torch, GOOD.replace("TORCH_VERSION=2.14.1", "TORCH_VERSION=2.5.0")),
    (check_python_and_torch, GOOD.replace("TORCHVISION_VERSION=0.29.1", "TORCHVISION_VERSION=0.2")),
    (check_python_and_torch, GOOD.replace("whl/cu128", "whl/cpu")),
    (check_no_secrets_or_ports, GOOD + "EXPOSE 8265\n"),
    (check_no_secrets_or_ports, GOOD + "ARG GITHUB_TOKEN=abc\n"),
    (check_no_secrets_or_ports, GOOD + "ENV RAY_AUTH_TOKEN=abc\n"),
]


def test_checks_pass_a_good_dockerfile() -> None:
    for check in CHECKS:
        check(parse_dockerfile(GOOD))


@pytest.mark.parametrize(
    ("check", "text"), BROKEN, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(BROKEN)]
)
def test_checks_reject_a_broken_dockerfile(check, text: str) -> None:
    with pytest.raises(AssertionError):
        check(parse_dockerfile(text))
