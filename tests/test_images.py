"""tools/images.py and .github/workflows/images.yml: one table of the images, each built for
the architecture that runs it, pushed and recorded by digest after a scan; environment files
compared with the record. Docker, the AWS CLI and nitro-cli are stand-ins on PATH (no daemon,
no network here); each Dockerfile's own contract (entrypoint, base, pins) is held by its tests
(tests/ml/test_model_steps_image.py, tests/ml/test_serve.py, tests/test_feature_build.py,
tests/ml/test_enclave.py) and not repeated here."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modules.iam_statements import ECR_IMAGE
from tests.test_workflows import COMMON_CHECKS, check_jsonschema, jobs, load, run_text, steps
from tools import images

REPO = Path(__file__).resolve().parent.parent
ML = REPO / "ml"
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
DEV = REPO / "environments" / "dev" / "environment.yaml"
WORKLOAD_ENVIRONMENTS = [
    path
    for path in sorted((REPO / "environments").glob("*/environment.yaml"))
    if yaml.safe_load(path.read_text())["kind"] == "workload"
]
CI_REGISTRY = "999999999999.dkr.ecr.us-east-1.amazonaws.com"
TRIVY = "aquasecurity/trivy-action@"
UPLOAD = "actions/upload-artifact@"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# --- the table -----------------------------------------------------------------------------


def dockerfiles_outside_the_table(ml_dir: Path) -> set[str]:
    named = {image.dockerfile for image in images.IMAGES if image.dockerfile}
    return {f"ml/{path.name}" for path in ml_dir.glob("Dockerfile*")} - named


def test_every_dockerfile_in_ml_is_an_image_of_the_table() -> None:
    assert dockerfiles_outside_the_table(ML) == set()
    for image in images.IMAGES:
        assert image.dockerfile is None or (REPO / image.dockerfile).is_file(), image.name


def test_a_new_dockerfile_not_in_the_table_is_found(tmp_path: Path) -> None:
    for path in ML.glob("Dockerfile*"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "Dockerfile.batch-scoring").write_text("FROM scratch\n")
    assert dockerfiles_outside_the_table(tmp_path) == {"ml/Dockerfile.batch-scoring"}


def dockerfiles_without_a_contract_test(names: set[str], test_sources: list[str]) -> set[str]:
    return {name for name in names if not any(name in source for source in test_sources)}


def contract_test_sources() -> list[str]:
    here = Path(__file__).resolve()
    return [p.read_text() for p in (REPO / "tests").rglob("test_*.py") if p.resolve() != here]


def test_every_built_image_has_a_contract_test_reading_its_dockerfile() -> None:
    # Its entrypoint resolving to a module of the package is held there, not repeated here.
    names = {Path(image.dockerfile).name for image in images.IMAGES if image.dockerfile}
    assert dockerfiles_without_a_contract_test(names, contract_test_sources()) == set()


def test_a_dockerfile_no_test_reads_is_found() -> None:
    names = {"Dockerfile.serving", "Dockerfile.unheld"}
    assert dockerfiles_without_a_contract_test(names, contract_test_sources()) == {
        "Dockerfile.unheld"
    }


def test_names_and_repositories_are_unique_and_fields_belong_to_one_image() -> None:
    assert len(images.BY_NAME) == len(images.IMAGES)
    repositories = [image.repository for image in images.IMAGES]
    assert len(set(repositories)) == len(repositories)
    fields = [field for image in images.IMAGES for field in image.fields]
    assert len(set(fields)) == len(fields)
    for image in images.IMAGES:
        assert (
            (image.delivery == "aws") == (image.upstream_tag is not None) == (not image.built_here)
        ), image.name


# --- platforms: what runs each image -------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "platform"),
    [
        ("ml.c7g.xlarge", "linux/arm64"),
        ("c7g.xlarge", "linux/arm64"),
        ("ml.m7gd.2xlarge", "linux/arm64"),
        ("c7gn.large", "linux/arm64"),
        ("g5g.xlarge", "linux/arm64"),
        ("ml.m5.xlarge", "linux/amd64"),
        ("ml.g5.xlarge", "linux/amd64"),
        ("ml.inf2.xlarge", "linux/amd64"),
        ("ml.c6i.large", "linux/amd64"),
        ("ml.m6a.large", "linux/amd64"),
    ],
)
def test_the_architecture_of_an_instance_type(instance_type: str, platform: str) -> None:
    assert images.instance_platform(instance_type) == platform


@pytest.mark.parametrize("value", ["c7g", "ml.c7g", "large", ""])
def test_what_is_not_an_instance_type_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="is not an instance type"):
        images.instance_platform(value)


def test_serving_is_arm64_because_the_dev_endpoint_is_graviton() -> None:
    dev = yaml.safe_load(DEV.read_text())
    endpoint = dev["ml"]["inference"]["endpoint_instance_type"]
    assert images.instance_platform(endpoint) == "linux/arm64"
    assert images.BY_NAME["serving"].platform == "linux/arm64"
    assert images.BY_NAME["serving"].runs_on == ("ml.inference.endpoint_instance_type",)
    # Twin: the same image on an x86 endpoint is told apart.
    assert images.platform_problem(images.BY_NAME["serving"], "ml.m5.xlarge") is not None


@pytest.mark.parametrize("path", WORKLOAD_ENVIRONMENTS, ids=lambda p: p.parent.name)
def test_every_image_is_built_for_what_runs_it(path: Path) -> None:
    environment = images.read_environment(path)
    for image in images.IMAGES:
        for field in image.runs_on:
            assert images.platform_problem(image, environment.value(field)) is None, field


def test_model_steps_and_training_run_the_same_x86_only_framework_image() -> None:
    (base,) = images.base_images(images.BY_NAME["model-steps"])
    training = images.BY_NAME["sagemaker-xgboost"]
    parts = ECR_IMAGE.match(base)
    assert parts is not None and parts["repository"] == training.repository
    assert images.BY_NAME["model-steps"].platform == training.platform == "linux/amd64"


@pytest.mark.parametrize("path", WORKLOAD_ENVIRONMENTS, ids=lambda p: p.parent.name)
def test_environments_name_the_images_built_here_by_digest_in_their_repository(
    path: Path,
) -> None:
    environment = images.read_environment(path)
    for image in (i for i in images.IMAGES if i.delivery == "ecr"):
        for field in image.fields:
            parts = ECR_IMAGE.match(environment.value(field))
            assert parts is not None and parts["digest"], field
            assert parts["repository"] == image.repository, field


# --- check ---------------------------------------------------------------------------------


def environment_data() -> dict[str, Any]:
    data = yaml.safe_load(DEV.read_text())
    assert isinstance(data, dict)
    return data


def set_field(data: dict[str, Any], dotted: str, value: str | None) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value


def get_field(data: dict[str, Any], dotted: str) -> str:
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return str(node)


def pinned(data: dict[str, Any]) -> dict[str, Any]:
    """dev with AWS's images named by digest, as `record` resolves them."""
    data = copy.deepcopy(data)
    for image in (i for i in images.IMAGES if i.delivery == "aws"):
        for field in image.fields:
            value = get_field(data, field)
            set_field(data, field, f"{images.without_tag(value)}@{digest_of(value)}")
    return data


def matching_record(data: dict[str, Any]) -> dict[str, Any]:
    """What CI recorded for `data`'s values: built images in CI's own registry (replication
    keeps the digest), AWS's in the registry the file names, the enclave by PCR0."""
    recorded: dict[str, list[str]] = {}
    for image in images.IMAGES:
        value = get_field(data, image.fields[0])
        if image.delivery == "ecr":
            value = f"{CI_REGISTRY}/{image.repository}@{value.rsplit('@', 1)[1]}"
        recorded[image.name] = [value]
    return {"images": recorded}


def write(tmp_path: Path, data: dict[str, Any], record: dict[str, Any]) -> tuple[Path, Path]:
    folder = tmp_path / "dev"
    folder.mkdir(exist_ok=True)
    environment = folder / "environment.yaml"
    environment.write_text(yaml.safe_dump(data, sort_keys=False))
    record_file = tmp_path / "digests.json"
    record_file.write_text(json.dumps(record))
    return environment, record_file


def run_check(environment: Path, record: Path) -> int:
    return images.main(["check", "--environment", str(environment), "--record", str(record)])


def test_check_passes_when_every_field_names_what_ci_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pinned(environment_data())
    environment, record = write(tmp_path, data, matching_record(data))
    assert run_check(environment, record) == 0
    assert capsys.readouterr().out == f"{environment}: every image is the one CI recorded\n"


def tag_instead(data: dict[str, Any]) -> None:
    value = get_field(data, "ml.pipeline.processing_image")
    set_field(data, "ml.pipeline.processing_image", f"{images.without_tag(value)}:v1.4")


def other_digest(data: dict[str, Any]) -> None:
    value = get_field(data, "ml.pipeline.inference_image")
    set_field(data, "ml.pipeline.inference_image", f"{images.without_tag(value)}@{digest_of('x')}")


def other_repository(data: dict[str, Any]) -> None:
    value = get_field(data, "ml.features.builder.image")
    set_field(data, "ml.features.builder.image", value.replace("feature-builder", "scratchpad"))


MISMATCHES: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    "a tag": (tag_instead, "ml.pipeline.processing_image", "names the tag :v1.4, not a digest"),
    "an AWS image by tag": (
        lambda d: set_field(
            d,
            "ml.monitoring.monitor_image",
            get_field(environment_data(), "ml.monitoring.monitor_image"),
        ),
        "ml.monitoring.monitor_image",
        "names the tag :latest",
    ),
    "another digest": (
        other_digest,
        "ml.pipeline.inference_image",
        "is not a digest CI recorded for serving",
    ),
    "another repository": (
        other_repository,
        "ml.features.builder.image",
        "repository phi-ml/scratchpad is not feature-builder's phi-ml/feature-builder",
    ),
    "another enclave image": (
        lambda d: set_field(d, "ml.inference.enclave.image_sha384", "a" * 96),
        "ml.inference.enclave.image_sha384",
        "is not the PCR0 CI recorded for the enclave image",
    ),
    "an x86 endpoint for the arm64 image": (
        lambda d: set_field(d, "ml.inference.endpoint_instance_type", "ml.m5.xlarge"),
        "ml.inference.endpoint_instance_type",
        "ml.m5.xlarge runs linux/amd64, but serving is built for linux/arm64",
    ),
}


@pytest.mark.parametrize("mismatch", sorted(MISMATCHES))
def test_check_fails_naming_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mismatch: str
) -> None:
    change, field, reason = MISMATCHES[mismatch]
    data = pinned(environment_data())
    record = matching_record(data)
    change(data)
    environment, record_file = write(tmp_path, data, record)
    assert run_check(environment, record_file) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [line for line in lines if line.startswith(f"{environment}: ")]
    assert len(problems) == 1, lines
    assert problems[0].startswith(f"{environment}: {field}: ") and reason in problems[0]
    assert lines[-1].startswith("1 problem: ")


def test_check_reports_every_mismatch_and_the_value_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pinned(environment_data())
    record = matching_record(data)
    tag_instead(data)
    other_digest(data)
    environment, record_file = write(tmp_path, data, record)
    assert run_check(environment, record_file) == 1
    out = capsys.readouterr().out
    recorded = record["images"]["serving"][0].rsplit("@", 1)[1]
    registry = images.registry_of(get_field(data, "ml.pipeline.inference_image"))
    assert f"write {registry}/phi-ml/readmission-inference@{recorded}" in out
    assert "ml.pipeline.processing_image" in out and out.splitlines()[-1].startswith("2 problems")


def test_aws_images_are_recorded_per_registry_and_each_environment_matches_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pinned(environment_data())
    record = matching_record(data)
    elsewhere = "492215442770.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-xgboost"
    record["images"]["sagemaker-xgboost"].append(f"{elsewhere}@{digest_of('eu')}")
    environment, record_file = write(tmp_path, data, record)
    assert run_check(environment, record_file) == 0
    # Twin: a digest recorded only for another region's registry is not this one's.
    set_field(data, "ml.pipeline.training_image", f"{elsewhere}@{digest_of('unrecorded')}")
    environment, record_file = write(tmp_path, data, record)
    assert run_check(environment, record_file) == 1
    assert "ml.pipeline.training_image" in capsys.readouterr().out


def test_records_of_several_jobs_are_read_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pinned(environment_data())
    recorded = matching_record(data)["images"]
    paths = []
    for name, values in recorded.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"images": {name: values}}))
    environment, _ = write(tmp_path, data, {"images": {}})
    arguments = ["check", "--environment", str(environment)]
    assert images.main([*arguments, *(f"--record={p}" for p in paths)]) == 0
    # Twin: without one job's record, its image is reported.
    assert images.main([*arguments, *(f"--record={p}" for p in paths[1:])]) == 1
    assert f"the records hold nothing for {next(iter(recorded))}" in capsys.readouterr().out


def test_the_organization_file_holds_no_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    organization = REPO / "environments" / "org" / "environment.yaml"
    data = pinned(environment_data())
    environment, record = write(tmp_path, data, matching_record(data))
    assert run_check(organization, record) == 0
    assert capsys.readouterr().out == f"{organization}: organization environment, no images\n"
    # Twin: a workload file beside it is still checked.
    tag_instead(data)
    environment, _ = write(tmp_path, data, matching_record(pinned(environment_data())))
    arguments = ["check", f"--environment={organization}", f"--environment={environment}"]
    assert images.main([*arguments, f"--record={record}"]) == 1


# --- usage errors: one line, exit 2, no traceback ------------------------------------------


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


BAD_RECORDS: dict[str, tuple[str | None, str]] = {
    "missing": (None, "no such digests record"),
    "not JSON": ('{"images": {', "malformed JSON at line 1"),
    "a list": ("[]", "images: required"),
    "images not a mapping": ('{"images": ["x"]}', "images: required"),
    "an unknown image": ('{"images": {"batch": ["x"]}}', "images.batch: not an image"),
    "not a list": ('{"images": {"serving": "x"}}', "images.serving: must be a non-empty list"),
    "a tag recorded": (
        json.dumps({"images": {"serving": [f"{CI_REGISTRY}/phi-ml/readmission-inference:v1"]}}),
        "images.serving[0]: must be an ECR image phi-ml/readmission-inference@sha256:",
    ),
    "another repository recorded": (
        json.dumps({"images": {"serving": [f"{CI_REGISTRY}/phi-ml/other@{digest_of('x')}"]}}),
        "images.serving[0]: must be an ECR image",
    ),
    "a PCR0 that is not one": ('{"images": {"enclave": ["abc"]}}', "images.enclave[0]: must"),
    "an unknown key": ('{"images": {}, "signatures": {}}', "signatures: unknown key"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_record_is_one_line_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, reason = BAD_RECORDS[case]
    record = tmp_path / "digests.json"
    if text is not None:
        record.write_text(text)
    assert run_check(DEV, record) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {record}: ") and reason in line, line


@pytest.mark.parametrize(
    "field",
    [
        "ml.monitoring.monitor_image",
        "ml.inference.enclave.image_sha384",
        "ml.pipeline.processing_instance_type",
    ],
)
def test_an_absent_field_is_one_line_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    data = pinned(environment_data())
    record = matching_record(data)
    set_field(data, field, None)
    environment, record_file = write(tmp_path, data, record)
    assert run_check(environment, record_file) == 2
    assert one_error_line(capsys) == f"error: {environment}: {field}: required field is missing"


def test_a_malformed_environment_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pinned(environment_data())
    environment, record_file = write(tmp_path, data, matching_record(data))
    environment.write_text("ml:\n  pipeline: [unclosed\n")
    assert run_check(environment, record_file) == 2
    assert one_error_line(capsys).startswith(f"error: {environment}: malformed YAML at line")


# --- build: stand-in docker on PATH --------------------------------------------------------

FAKE_DOCKER = """#!{python}
import hashlib, json, os, sys
arguments = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(arguments) + "\\n")
if arguments == ["buildx", "version"]:
    sys.exit(3 if os.environ.get("FAKE_NO_BUILDX") else 0)
elif arguments[:3] == ["buildx", "imagetools", "inspect"]:
    print(json.dumps("sha256:" + hashlib.sha256(arguments[3].encode()).hexdigest()))
elif arguments[:2] == ["buildx", "build"]:
    if os.environ.get("FAKE_BUILD_FAILS"):
        sys.exit(17)
    metadata = arguments[arguments.index("--metadata-file") + 1]
    tag = arguments[arguments.index("--tag") + 1]
    digest = "sha256:" + hashlib.sha256(("pushed " + tag).encode()).hexdigest()
    with open(metadata, "w") as out:
        json.dump({{"containerimage.digest": digest}}, out)
else:
    sys.exit(3)
"""

FAKE_AWS = """#!{python}
import hashlib, json, os, sys
arguments = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(arguments) + "\\n")
flags = ("--registry-id", "--region", "--repository-name", "--image-ids")
where = "/".join(arguments[arguments.index(flag) + 1] for flag in flags)
digest = "sha256:" + hashlib.sha256(where.encode()).hexdigest()
print(json.dumps({{"images": [{{"imageId": {{"imageDigest": digest}}}}], "failures": []}}))
"""


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docker and aws stand-ins first on PATH; returns the log of their calls."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, script in (("docker", FAKE_DOCKER), ("aws", FAKE_AWS)):
        (folder / name).write_text(script.format(python=sys.executable))
        (folder / name).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def builds(log: Path) -> list[list[str]]:
    return [call for call in calls(log) if call[:2] == ["buildx", "build"]]


def option(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == flag]


def test_build_pushes_each_image_for_its_platform_and_records_the_pushed_digest(
    tmp_path: Path, stand_ins: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "images" / "digests.json"
    output = tmp_path / "github-output"
    arguments = ["build", "--registry", CI_REGISTRY, "--tag", "quarantine-7-1"]
    assert images.main([*arguments, f"--record={record}", f"--github-output={output}"]) == 0
    built = {option(command, "--file")[0]: command for command in builds(stand_ins)}
    pushed = [image for image in images.IMAGES if image.delivery == "ecr"]
    assert set(built) == {image.dockerfile for image in pushed}
    recorded = json.loads(record.read_text())["images"]
    for image in pushed:
        command = built[str(image.dockerfile)]
        assert option(command, "--platform") == [image.platform]
        assert "--push" in command and "--provenance=false" in command and command[-1] == "."
        target = f"{CI_REGISTRY}/{image.repository}:quarantine-7-1"
        assert option(command, "--tag") == [target]
        # The digest the push produced (buildx's metadata file), in the registry pushed to.
        assert recorded[image.name] == [
            f"{CI_REGISTRY}/{image.repository}@{digest_of('pushed ' + target)}"
        ]
    assert "enclave" not in recorded  # loaded for nitro-cli, not pushed: not built by default
    assert "ref=" not in output.read_text()  # several images: one output per image
    assert f"serving={recorded['serving'][0]}" in output.read_text().splitlines()
    assert capsys.readouterr().err.count("images: ") == len(pushed)


def test_build_pins_each_base_by_the_digest_its_tag_names(tmp_path: Path, stand_ins: Path) -> None:
    record = tmp_path / "digests.json"
    arguments = ["build", "--registry", CI_REGISTRY, "--tag", "t", f"--record={record}"]
    assert images.main([*arguments, "--image", "serving", "--image", "model-steps"]) == 0
    serving, steps_ = builds(stand_ins)
    python = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"
    assert option(serving, "--build-context") == [
        f"{python}=docker-image://public.ecr.aws/docker/library/python@{digest_of(python)}"
    ]
    # FROM ${BASE_IMAGE}: the argument itself names the pinned base.
    (xgboost,) = images.base_images(images.BY_NAME["model-steps"])
    assert option(steps_, "--build-arg") == [
        f"BASE_IMAGE={images.without_tag(xgboost)}@{digest_of(xgboost)}"
    ]
    assert json.loads(record.read_text())["bases"]["serving"] == [
        f"public.ecr.aws/docker/library/python@{digest_of(python)}"
    ]


def test_the_enclave_image_is_loaded_uncached_and_never_pushed(
    tmp_path: Path, stand_ins: Path
) -> None:
    output = tmp_path / "github-output"
    arguments = ["build", "--image", "enclave", "--tag", "ci-1", f"--record={tmp_path / 'r.json'}"]
    assert images.main([*arguments, f"--github-output={output}"]) == 0
    (command,) = builds(stand_ins)
    assert option(command, "--platform") == ["linux/arm64"]
    assert "--load" in command and "--no-cache" in command and "--push" not in command
    assert output.read_text().splitlines()[-1] == "ref=phi-ml/enclave:ci-1"


def test_build_without_docker_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    record = tmp_path / "digests.json"
    arguments = ["build", "--registry", CI_REGISTRY, "--tag", "t", f"--record={record}"]
    assert images.main(arguments) == 2
    assert "docker is not on PATH" in one_error_line(capsys)
    assert not record.exists()


def test_build_without_buildx_is_one_line_and_exit_2(
    tmp_path: Path,
    stand_ins: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_NO_BUILDX", "1")
    arguments = ["build", "--registry", CI_REGISTRY, "--tag", "t", f"--record={tmp_path / 'r'}"]
    assert images.main(arguments) == 2
    assert "docker buildx is not available" in one_error_line(capsys)
    assert builds(stand_ins) == []


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--registry", "registry.example.com", "--tag", "t"], "needs an ECR registry"),
        (["--registry", ".dkr.ecr..amazonaws.com", "--tag", "t"], "needs an ECR registry"),
        (["--tag", "t"], "needs an ECR registry"),
        (["--registry", CI_REGISTRY, "--tag", "t", "--image", "batch"], "--image batch: not"),
        (
            ["--registry", CI_REGISTRY, "--tag", "t", "--image", "sagemaker-xgboost"],
            "not an image built",
        ),
    ],
)
def test_build_refuses_what_it_cannot_push(
    stand_ins: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], reason: str
) -> None:
    assert images.main(["build", *arguments]) == 2
    assert reason in one_error_line(capsys)
    assert builds(stand_ins) == []


def test_a_failed_build_is_exit_1_and_records_nothing(
    tmp_path: Path,
    stand_ins: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_BUILD_FAILS", "1")
    record = tmp_path / "digests.json"
    arguments = ["build", "--registry", CI_REGISTRY, "--tag", "t", f"--record={record}"]
    assert images.main([*arguments, "--image", "serving"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: docker buildx build of serving failed (exit 17)"
    )
    assert not record.exists()


def test_build_refuses_a_malformed_record_before_pushing(
    tmp_path: Path, stand_ins: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "digests.json"
    record.write_text("{not json")
    arguments = ["build", "--registry", CI_REGISTRY, "--tag", "t", f"--record={record}"]
    assert images.main(arguments) == 2
    assert one_error_line(capsys).startswith(f"error: {record}: malformed JSON")
    assert builds(stand_ins) == []


# --- record: AWS's images and the enclave's PCR0 -------------------------------------------


def test_record_resolves_aws_images_once_per_registry(tmp_path: Path, stand_ins: Path) -> None:
    record = tmp_path / "digests.json"
    arguments = ["record", f"--record={record}"]
    environments = [f"--environment={path}" for path in WORKLOAD_ENVIRONMENTS]
    assert images.main([*arguments, *environments]) == 0
    recorded = json.loads(record.read_text())["images"]
    for image in (i for i in images.IMAGES if i.delivery == "aws"):
        registries = {
            images.registry_of(images.read_environment(path).value(image.fields[0]))
            for path in WORKLOAD_ENVIRONMENTS
        }
        assert {images.registry_of(r) for r in recorded[image.name]} == registries
        asked = [c for c in calls(stand_ins) if image.repository in c]
        assert len(asked) == len(registries)
        assert all(f"imageTag={image.upstream_tag}" in c for c in asked)
    # Each environment file, once pinned to what was recorded, passes the check of that record.
    for path in WORKLOAD_ENVIRONMENTS:
        environment = images.read_environment(path)
        for image in (i for i in images.IMAGES if i.delivery == "aws"):
            value = environment.value(image.fields[0])
            (reference,) = [
                r
                for r in recorded[image.name]
                if images.registry_of(r) == images.registry_of(value)
            ]
            assert images.field_problem(image, reference, recorded[image.name]) is None
            assert images.field_problem(image, value, recorded[image.name]) is not None


def test_record_adds_the_enclave_pcr0_and_keeps_what_was_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "digests.json"
    reference = f"{CI_REGISTRY}/phi-ml/readmission-inference@{digest_of('s')}"
    record.write_text(json.dumps({"images": {"serving": [reference]}}))
    measurement = tmp_path / "measurement.json"
    measurement.write_text(json.dumps({"image_sha384": "b" * 96, "measurements": {}}))
    arguments = ["record", f"--record={record}", f"--enclave-measurement={measurement}"]
    assert images.main(arguments) == 0
    assert json.loads(record.read_text())["images"] == {
        "enclave": ["b" * 96],
        "serving": [reference],
    }
    # Twin: a measurement without a PCR0 is one line naming the file and the field.
    measurement.write_text(json.dumps({"image_sha384": "not-a-pcr"}))
    assert images.main(arguments) == 2
    assert one_error_line(capsys) == (
        f"error: {measurement}: image_sha384: must be a PCR0 (96 lower-case hex)"
    )


def test_record_without_the_aws_cli_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert images.main(["record", f"--environment={DEV}", f"--record={tmp_path / 'r'}"]) == 2
    assert "aws CLI is not on PATH" in one_error_line(capsys)


# --- the workflow --------------------------------------------------------------------------


def test_the_workflow_is_valid_against_the_github_workflow_schema() -> None:
    for schema in ("vendor.github-workflows", "custom.github-workflows-require-timeout"):
        result = check_jsonschema(schema, WORKFLOW)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("check", sorted(COMMON_CHECKS))
def test_the_workflow_holds_the_properties_of_every_workflow(check: str) -> None:
    # Pinned actions, least privilege per job, limits, commands that exist, references that
    # resolve: the same checks (and their failing twins) as tests/test_workflows.py.
    assert COMMON_CHECKS[check](load(WORKFLOW)) == []


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action)


def scan_problems(workflow: dict[str, Any]) -> list[str]:
    """In every job that builds an image: the Trivy gate (HIGH,CRITICAL, exit code 1) runs
    on what was built, after a SARIF report is uploaded, and before the digest is released
    or recorded."""
    problems = []
    for name, job in jobs(workflow).items():
        job_steps = steps(job)
        built = [i for i, s in enumerate(job_steps) if "tools.images build" in run_text(s)]
        if not built:
            continue
        gates = [
            i
            for i, s in enumerate(job_steps)
            if uses(s, TRIVY)
            and s.get("with", {}).get("severity") == "HIGH,CRITICAL"
            and str(s.get("with", {}).get("exit-code")) == "1"
            and s["with"].get("image-ref") == "${{ steps.build.outputs.ref }}"
        ]
        sarif = [
            i for i, s in enumerate(job_steps) if uses(s, "github/codeql-action/upload-sarif@")
        ]
        released = [
            i
            for i, s in enumerate(job_steps)
            if uses(s, UPLOAD) or "put-image" in run_text(s) or "tools.images record" in run_text(s)
        ]
        if not gates or gates[0] < built[0]:
            problems.append(f"{name}: no Trivy gate (HIGH,CRITICAL, exit 1) after the build")
        elif released and min(released) < gates[0]:
            problems.append(f"{name}: releases or records before the Trivy gate")
        if not sarif or (gates and sarif[0] > gates[0]):
            problems.append(f"{name}: no SARIF uploaded before the gate")
    return problems


def matrix_problems(workflow: dict[str, Any]) -> list[str]:
    """The images built are the table's: the pushed ones through `tools.images matrix`, the
    enclave by name, AWS's through `record --environment`; the final job checks them all."""
    problems = []
    all_jobs = jobs(workflow)
    texts = {name: "\n".join(run_text(s) for s in steps(job)) for name, job in all_jobs.items()}
    matrix_jobs = [n for n, j in all_jobs.items() if "matrix" in j.get("strategy", {})]
    for name in matrix_jobs:
        strategy = all_jobs[name]["strategy"]["matrix"]
        if not (isinstance(strategy, str) and "outputs.matrix" in strategy):
            problems.append(f"{name}: its matrix is not the table's (tools.images matrix)")
    if not any("tools.images matrix" in text for text in texts.values()):
        problems.append("no job reads the table (tools.images matrix)")
    for image in (i for i in images.IMAGES if i.delivery == "eif"):
        if not any(f"--image {image.name}" in text for text in texts.values()):
            problems.append(f"{image.name}: no job builds it")
    if not any("tools.images record" in t and "--environment" in t for t in texts.values()):
        problems.append("no job records AWS's images")
    recorders = {
        n
        for n, j in all_jobs.items()
        if any(uses(s, UPLOAD) and "image-digests-" in str(s.get("with", {})) for s in steps(j))
    }
    checkers = [n for n, text in texts.items() if "tools.images check" in text]
    if not checkers:
        problems.append("no job runs tools.images check")
    for name in checkers:
        missing = recorders - set(all_jobs[name].get("needs", []))
        if missing:
            problems.append(f"{name}: checks without the records of {sorted(missing)}")
    return problems


def test_each_image_is_scanned_before_its_digest_is_released() -> None:
    assert scan_problems(load(WORKFLOW)) == []


def test_the_workflow_builds_and_checks_every_image_of_the_table() -> None:
    assert matrix_problems(load(WORKFLOW)) == []
    triggers = load(WORKFLOW)["on"]
    assert "ml/**" in triggers["push"]["paths"] and "workflow_dispatch" in triggers


def _gate_after_release(workflow: dict[str, Any]) -> None:
    job_steps = jobs(workflow)["push"]["steps"]
    gate = next(i for i, s in enumerate(job_steps) if s.get("with", {}).get("exit-code") == "1")
    job_steps.append(job_steps.pop(gate))


def _gate_that_never_fails(workflow: dict[str, Any]) -> None:
    for step in steps(jobs(workflow)["enclave"]):
        if step.get("with", {}).get("exit-code") == "1":
            step["with"]["exit-code"] = "0"


def _no_sarif(workflow: dict[str, Any]) -> None:
    job = jobs(workflow)["push"]
    job["steps"] = [s for s in steps(job) if not uses(s, "github/codeql-action/upload-sarif@")]


def _hard_coded_matrix(workflow: dict[str, Any]) -> None:
    jobs(workflow)["push"]["strategy"]["matrix"] = {"image": ["serving"]}


WORKFLOW_TWINS: dict[str, tuple[Callable[[dict[str, Any]], None], Callable[..., list[str]]]] = {
    "gate after the release": (_gate_after_release, scan_problems),
    "gate that never fails": (_gate_that_never_fails, scan_problems),
    "no SARIF upload": (_no_sarif, scan_problems),
    "hard-coded matrix": (_hard_coded_matrix, matrix_problems),
    "no enclave job": (lambda w: w["jobs"].pop("enclave"), matrix_problems),
    "check without a record": (
        lambda w: jobs(w)["check"].update(needs=["push", "enclave"]),
        matrix_problems,
    ),
    "no check": (lambda w: w["jobs"].pop("check"), matrix_problems),
}


@pytest.mark.parametrize("twin", sorted(WORKFLOW_TWINS))
def test_a_broken_copy_of_the_workflow_is_caught(twin: str) -> None:
    change, check = WORKFLOW_TWINS[twin]
    workflow = copy.deepcopy(load(WORKFLOW))
    change(workflow)
    assert set(check(workflow)) - set(check(load(WORKFLOW))), twin


def test_only_the_jobs_with_aws_credentials_get_an_oidc_token() -> None:
    for name, job in jobs(load(WORKFLOW)).items():
        oidc = any(uses(s, "aws-actions/configure-aws-credentials@") for s in steps(job))
        assert (job["permissions"].get("id-token") == "write") == oidc, name


def test_the_matrix_is_the_pushed_images_of_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "github-output"
    assert images.main(["matrix", f"--github-output={output}"]) == 0
    (line,) = output.read_text().splitlines()
    include = json.loads(line.removeprefix("matrix="))["include"]
    assert [entry["image"] for entry in include] == ["feature-builder", "model-steps", "serving"]
    by_image = {entry["image"]: entry for entry in include}
    assert by_image["serving"]["platform"] == "linux/arm64"
    # The model steps' base is AWS's ECR image: the job logs in to that registry.
    assert re.fullmatch(
        r"683313688378\.dkr\.ecr\.us-east-1\.amazonaws\.com",
        by_image["model-steps"]["base_registries"],
    )
    assert by_image["serving"]["base_registries"] == ""  # ECR Public: anonymous pulls
    assert capsys.readouterr().out.strip() == line.removeprefix("matrix=")


def test_the_command_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    record = tmp_path / "digests.json"
    record.write_text('{"images": {"serving": ["nope"]}}')
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.images",
            "check",
            f"--environment={DEV}",
            f"--record={record}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        f"error: {record}: images.serving[0]: must be an ECR image "
        "phi-ml/readmission-inference@sha256:<64 hex> (got 'nope')"
    ]
    assert completed.stdout == ""
