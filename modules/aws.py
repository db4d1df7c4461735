"""The one place that imports the AWS provider bindings (cdktf-cdktf-provider-aws 20.1.0).

The bindings' package `__init__` imports all ~2,200 resource submodules (about 10 s and 1.6 GB).
Each submodule only needs the package's `_jsii` assembly, so we register a bare package object
and import, on first use of a class (`aws.S3Bucket`), just the submodule defining it:
identical classes, identical synth output, a fraction of the start-up.
PHI_PLAIN_PROVIDER_IMPORT=1 uses the plain import instead (the byte-identity test compares
both). Moving to another bindings package (e.g. the cdktn fork) changes this file only.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

_PACKAGE = "cdktf_cdktf_provider_aws"


def _register_bare_package() -> None:
    if _PACKAGE in sys.modules:
        return
    if os.environ.get("PHI_PLAIN_PROVIDER_IMPORT") == "1":
        importlib.import_module(_PACKAGE)
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{_PACKAGE} is not installed (run `make setup`)")
    package = types.ModuleType(_PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__package__ = _PACKAGE
    sys.modules[_PACKAGE] = package


def _submodule(name: str) -> Any:
    _register_bare_package()
    return importlib.import_module(f"{_PACKAGE}.{name}")


def _submodule_of(class_name: str) -> str:
    """The bindings' submodule defining a class: the longest snake_case prefix of its name
    that is a submodule (SagemakerFeatureGroupFeatureDefinition -> sagemaker_feature_group,
    S3BucketVersioningA -> s3_bucket_versioning)."""
    _register_bare_package()
    if class_name.startswith("AwsProvider"):  # the provider itself lives in `provider`
        return "provider"
    words = [w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", class_name)]
    root = Path(sys.modules[_PACKAGE].__path__[0])
    for length in range(len(words), 0, -1):
        candidate = "_".join(words[:length])
        if (root / candidate / "__init__.py").is_file():
            return candidate
    raise AttributeError(f"no provider binding defines {class_name!r}")


# Struct classes whose name is also a resource's: `AutoscalingGroupTag` is both the
# aws_autoscaling_group_tag resource and the `tag` block of aws_autoscaling_group. The block is
# reached by an alias naming its submodule and class.
_BLOCK_ALIASES = {"AutoscalingGroupTagBlock": ("autoscaling_group", "AutoscalingGroupTag")}


def __getattr__(class_name: str) -> Any:
    """`aws.S3Bucket`, `aws.SagemakerPipeline`, ...: loaded on first use, then cached."""
    if not class_name[:1].isupper():
        raise AttributeError(class_name)
    submodule, defined_as = _BLOCK_ALIASES.get(class_name, ("", class_name))
    binding = getattr(_submodule(submodule or _submodule_of(class_name)), defined_as)
    globals()[class_name] = binding
    return binding
