"""CI's enclave image step: build the EIF, record its measurement, package the parent.

    python -m ml.enclave.measure build --docker-uri URI --output-file enclave.eif \\
        --record measurement.json
    python -m ml.enclave.measure parse OUTPUT_FILE       (a saved build-enclave output)
    python -m ml.enclave.measure parent-archive --out parent.pyz

`nitro-cli build-enclave --docker-uri URI --output-file FILE` turns the image
(ml/Dockerfile.enclave) into an enclave image file and prints progress lines, then a JSON
object `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": ..., "PCR1": ...,
"PCR2": ...}}` (and PCR8 for a signed image). PCR0, the digest of the whole image, is what
the patient-token key policy admits: the record names it `image_sha384`, the value that goes
into every environment file at `ml.inference.enclave.image_sha384`, and the S3 keys under
which the image and its parent are uploaded (ml/enclave/contract.py). PCR1 (kernel and boot
ramdisk) and PCR2 (the application) are recorded for audit.

The parent archive is a zipapp holding only the parent and the protocol: the parent runs with
the host's python3 and boto3, and never carries the enclave's key code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ml.enclave import contract

PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent.parent
# What the parent archive holds: the parent, the protocol, the shared contract; no key code.
PARENT_MODULES: Final = (
    "ml/__init__.py",
    "ml/enclave/__init__.py",
    "ml/enclave/contract.py",
    "ml/enclave/protocol.py",
    "ml/enclave/parent.py",
)
PARENT_MAIN: Final = "import sys\nfrom ml.enclave.parent import main\nsys.exit(main())\n"


class MeasurementError(ValueError):
    """nitro-cli's output holds no usable measurement."""


@dataclass(frozen=True)
class Measurements:
    pcr0: str
    pcr1: str
    pcr2: str
    pcr8: str | None = None

    @property
    def image_sha384(self) -> str:
        return self.pcr0


def _pcr(measurements: dict[str, Any], name: str) -> str:
    value = measurements.get(name)
    if not isinstance(value, str) or not contract.SHA384_HEX.match(value.lower()):
        raise MeasurementError(f"{name} is not a SHA-384 in hex (96 characters)")
    return value.lower()


def parse_build_output(text: str) -> Measurements:
    """The measurements in `nitro-cli build-enclave` (or `describe-eif`) output."""
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(text) if char == "{"):
        try:
            document, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(document, dict) and isinstance(document.get("Measurements"), dict):
            measurements = document["Measurements"]
            algorithm = measurements.get("HashAlgorithm", "")
            if not isinstance(algorithm, str) or not algorithm.startswith("Sha384"):
                raise MeasurementError(f"measurements are not SHA-384 ({algorithm!r})")
            return Measurements(
                pcr0=_pcr(measurements, "PCR0"),
                pcr1=_pcr(measurements, "PCR1"),
                pcr2=_pcr(measurements, "PCR2"),
                pcr8=_pcr(measurements, "PCR8") if "PCR8" in measurements else None,
            )
    raise MeasurementError("no Measurements object in the output (did the build fail?)")


Runner = Callable[[list[str]], str]


def _run(command: list[str]) -> str:  # pragma: no cover - needs nitro-cli
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return completed.stdout + completed.stderr


def build_enclave(docker_uri: str, output_file: Path, run: Runner = _run) -> Measurements:
    # No signing and no debug options exist at build time; the production/debug choice is
    # run-enclave's (modules/enclave_bootstrap.py never passes --debug-mode).
    return parse_build_output(
        run(
            [
                "nitro-cli",
                "build-enclave",
                "--docker-uri",
                docker_uri,
                "--output-file",
                str(output_file),
            ]
        )
    )


def record(measurements: Measurements, eif: Path, docker_uri: str) -> dict[str, Any]:
    return {
        "image_sha384": measurements.image_sha384,
        "measurements": asdict(measurements),
        "docker_uri": docker_uri,
        "eif_sha256": hashlib.sha256(eif.read_bytes()).hexdigest(),
        "upload": {
            "image": contract.image_object(measurements.image_sha384),
            "parent": contract.parent_archive_object(measurements.image_sha384),
        },
    }


def build_parent_archive(out: Path, root: Path = PACKAGE_ROOT) -> Path:
    # Fixed timestamps: the same sources give the same archive bytes.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in (*PARENT_MODULES, "__main__.py"):
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            body = PARENT_MAIN if name == "__main__.py" else (root / name).read_text()
            archive.writestr(entry, body)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.enclave.measure", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build")
    build.add_argument("--docker-uri", required=True)
    build.add_argument("--output-file", type=Path, required=True)
    build.add_argument("--record", type=Path, required=True)
    parse = commands.add_parser("parse")
    parse.add_argument("output", type=Path)
    archive = commands.add_parser("parent-archive")
    archive.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "build":  # pragma: no cover - needs nitro-cli
            measured = build_enclave(arguments.docker_uri, arguments.output_file)
            written = record(measured, arguments.output_file, arguments.docker_uri)
            arguments.record.write_text(json.dumps(written, indent=2) + "\n")
            print(measured.image_sha384)
        elif arguments.command == "parse":
            print(parse_build_output(arguments.output.read_text()).image_sha384)
        else:
            build_parent_archive(arguments.out)
    except MeasurementError as problem:
        print(f"measure: error: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
