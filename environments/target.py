"""Where the synthesized Terraform will run: real AWS accounts or the local emulator."""

from __future__ import annotations

import os
from enum import StrEnum

TARGET_VARIABLE = "PHI_TARGET"


class Target(StrEnum):
    """Where the synthesized Terraform will run.

    `aws` is real accounts. `local` is the moto emulator on loopback: the only differences
    in the output are path-style S3 addressing in the provider and the backend (moto serves
    buckets by path); endpoints come from AWS_ENDPOINT_URL at run time, not from the output.
    """

    AWS = "aws"
    LOCAL = "local"

    @classmethod
    def from_environment(cls) -> Target:
        value = os.environ.get(TARGET_VARIABLE, cls.AWS.value)
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"{TARGET_VARIABLE}={value!r} is not a target (use 'aws' or 'local')"
            ) from None
