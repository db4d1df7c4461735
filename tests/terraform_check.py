"""Real `terraform validate` of a synthesized scratch stack, against an offline provider mirror.

The mirror is named by PHI_PROVIDER_MIRROR (a directory holding registry.terraform.io/, such as
/opt/tf-plugins); without it, or without terraform on PATH, the calling test is skipped with the
reason, so the same tests run where the registry is reachable and the variable is set elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cdktf import App, TerraformStack

from modules import aws

STACK = "scratch"


def provider_mirror_cli_config(tmp_path: Path) -> Path:
    """A Terraform CLI configuration that installs providers from the mirror only; skips the
    test when terraform or the mirror is missing."""
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    mirror = os.environ.get("PHI_PROVIDER_MIRROR")
    if not mirror:
        pytest.skip("PHI_PROVIDER_MIRROR is not set (a filesystem mirror of hashicorp/aws)")
    cli_config = tmp_path / "terraform.rc"
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    return cli_config


def terraform_validate(
    tmp_path: Path, build: Callable[[TerraformStack], object], *, region: str
) -> subprocess.CompletedProcess[str]:
    """Synthesize `build` into a real stack directory (AWS provider in `region`), run
    terraform init and validate there, assert both succeed and that terraform calls the
    configuration valid; return validate's result."""
    cli_config = provider_mirror_cli_config(tmp_path)
    app = App(outdir=str(tmp_path / "out"))
    stack = TerraformStack(app, STACK)
    aws.AwsProvider(stack, "aws", region=region)
    build(stack)
    app.synth()
    environment = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "TF_IN_AUTOMATION": "1"}
    directory = tmp_path / "out" / "stacks" / STACK
    result = subprocess.CompletedProcess[str]([], 0)
    for command in (
        ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
        ["terraform", "validate", "-no-color"],
    ):
        result = subprocess.run(
            command, cwd=directory, env=environment, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout
    return result
