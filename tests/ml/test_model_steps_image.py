"""The model steps' image, held to its contract without building it (no Docker daemon here):
FROM SageMaker's XGBoost 3.0-5 image, the package copied in, an exec-form entrypoint; every
step program it is meant to run exists, has a main, and imports only what that image ships;
pyproject pins the image's versions, and they are the ones installed here."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest

from ml.framework_versions import (
    FRAMEWORK_PACKAGES,
    PYPROJECT_PINS,
    XGBOOST_IMAGE_TAG,
    XGBOOST_REPOSITORY,
)
from modules.pipelines import STEP_PROGRAMS as PIPELINE_STEP_PROGRAMS
from tests import dockerfiles

DOCKERFILE = dockerfiles.REPO / "ml" / "Dockerfile.model-steps"
# What the training pipeline's processing steps run in this image: one list, the pipeline's.
STEP_PROGRAMS = tuple(sorted(set(PIPELINE_STEP_PROGRAMS.values())))
# Import names of the framework image's packages (distribution name -> module name).
IMPORT_NAMES = {"scikit-learn": "sklearn"}
SHIPPED = frozenset(IMPORT_NAMES.get(name, name) for name in FRAMEWORK_PACKAGES)


def third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level non-stdlib modules `module` needs, following its imports inside ml/."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = dockerfiles.REPO / Path(*module.split(".")).with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "ml":
                found |= third_party_imports(name, seen)
            elif top != "__future__" and top not in sys.stdlib_module_names:
                found.add(top)
    return found


def test_the_image_is_built_from_the_framework_image_with_the_package() -> None:
    instructions = dockerfiles.instructions(DOCKERFILE)
    arguments = dict(rest.split("=", 1) for kind, rest in instructions if kind == "ARG")
    assert arguments["BASE_IMAGE"].endswith(f"/{XGBOOST_REPOSITORY}:{XGBOOST_IMAGE_TAG}")
    assert ("FROM", "${BASE_IMAGE}") in instructions
    assert ("COPY", "ml /opt/program/ml") in instructions
    environment = " ".join(rest for kind, rest in instructions if kind == "ENV")
    assert "PYTHONPATH=/opt/program" in environment
    assert dockerfiles.entrypoint(DOCKERFILE) == ["python3"]


@pytest.mark.parametrize("program", STEP_PROGRAMS)
def test_each_step_program_exists_with_a_main(program: str) -> None:
    module = importlib.import_module(program)
    assert callable(module.main)
    assert (dockerfiles.REPO / Path(*program.split(".")).with_suffix(".py")).is_file()


@pytest.mark.parametrize("program", STEP_PROGRAMS)
def test_each_step_program_imports_only_what_the_image_ships(program: str) -> None:
    assert third_party_imports(program) <= SHIPPED, program


def test_the_twin_a_program_needing_more_is_told_apart() -> None:
    # The feature builder reads S3 and NDJSON (boto3, orjson): not runnable in this image.
    assert not third_party_imports("ml.feature_builder") <= SHIPPED


def test_pyproject_pins_the_images_versions_and_they_are_installed() -> None:
    pins = dockerfiles.pyproject_pins()
    for distribution, version in PYPROJECT_PINS.items():
        assert pins[distribution] == version, distribution
        assert importlib.metadata.version(distribution) == version, distribution
        image_name = "xgboost" if distribution == "xgboost-cpu" else distribution
        assert FRAMEWORK_PACKAGES[image_name] == version, distribution
