"""CKV_PHI_35 "Ensure the role SageMaker models run as reads only model archives under a
pipeline's prefix".

The serving container runs code and weights a pipeline produced; the role it runs as needs the
model archive and nothing else of the artifacts bucket, where the pipelines also keep the
training datasets, evaluation sets and baselines derived from PHI. HIPAA 45 CFR 164.502(b) and
164.514(d) (minimum necessary), 164.312(a)(1) (access control), GDPR Art. 5(1)(c) and 25 (data
minimisation, by design): a model, or a container image compromised through it, must not be
able to read the patient data it was trained on.

Judged, with the stack in view: the policies of every model execution role, that is every
`aws_iam_role` the stack hands to SageMaker for its models: the role an
`aws_sagemaker_model` names (`execution_role_arn`) and the role a function that creates models
is given in its `MODEL_EXECUTION_ROLE_ARN` environment variable (the deployer's contract).
Each `aws_iam_role_policy` of such a role passes when its `policy` is a JSON document whose
every Allow statement that can read objects (an `Action` matching `s3:GetObject` or
`s3:GetObjectVersion`, wildcards included, or a `NotAction`) names, in `Resource` (no
`NotResource`), only object ARNs whose key starts with a literal first segment (a prefix, not
a wildcard) and ends in `/model.tar.gz`, the archive a SageMaker training job writes. An
`aws_iam_role_policy_attachment` to such a role fails (a managed policy's statements are not
in the configuration to verify), and so does the role itself when it carries an
`inline_policy`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, json_document
from policies.checks._documents import as_list, statements
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    register,
)

MODEL_ARCHIVE = "model.tar.gz"
MODEL_ROLE_VARIABLE = "MODEL_EXECUTION_ROLE_ARN"
OBJECT_READS = ("s3:getobject", "s3:getobjectversion")
_S3_ARN = re.compile(r"^arn:[^:]+:s3:::(?P<object>.*)$")
_INTERPOLATION = re.compile(r"^\$\{[^}]*\}")


def model_roles(stack: Stack) -> set[str]:
    """Names of the stack's roles that SageMaker models run as."""
    roles: set[str] = set()
    for model in stack.resources("aws_sagemaker_model").values():
        roles |= referenced_names(model.get("execution_role_arn"), "aws_iam_role")
    for function in stack.resources("aws_lambda_function").values():
        for environment in blocks(function, "environment"):
            for variables in blocks(environment, "variables"):
                roles |= referenced_names(variables.get(MODEL_ROLE_VARIABLE), "aws_iam_role")
    return roles


def object_key(resource: str) -> str | None:
    """The key part of an S3 object ARN, written literally or after a bucket-ARN reference
    (`${...arn}/key`); None when the resource is no object ARN with a literal bucket."""
    reference = _INTERPOLATION.match(resource)
    if reference is not None:
        rest = resource[reference.end() :]
        return rest[1:] if rest.startswith("/") else None
    match = _S3_ARN.match(resource)
    if match is None:
        return None
    bucket, slash, key = match["object"].partition("/")
    if not slash or not bucket or any(c in bucket for c in "*?"):
        return None
    return key


def is_model_archive(resource: Any) -> bool:
    key = object_key(str(resource))
    if key is None:
        return False
    first_segment = key.split("/", 1)[0]
    return (
        bool(first_segment)
        and not any(c in first_segment for c in "*?$")
        and key.endswith(f"/{MODEL_ARCHIVE}")
    )


def reads_objects(statement: dict[str, Any]) -> bool:
    if "NotAction" in statement:
        return True
    patterns = [str(a).lower() for a in as_list(statement.get("Action"))]
    return any(fnmatch.fnmatchcase(read, p) for read in OBJECT_READS for p in patterns)


def policy_problems(policy: Any) -> list[str]:
    document = json_document(policy)
    if document is None:
        return ["policy is not a JSON document: its reads cannot be verified"]
    problems = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow" or not reads_objects(statement):
            continue
        sid = statement.get("Sid", "(no Sid)")
        if "NotResource" in statement:
            problems.append(f"{sid}: reads objects with NotResource")
        wider = [r for r in as_list(statement.get("Resource")) if not is_model_archive(r)]
        if wider:
            problems.append(f"{sid}: reads {', '.join(map(str, wider))}, not only model archives")
    return problems


class ModelExecutionRoleReadsOnlyModelArchives(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the role SageMaker models run as reads only model archives under a "
                "pipeline's prefix"
            ),
            id="CKV_PHI_35",
            category=CheckCategories.IAM,
            judged_types=["aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_iam_role"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        roles = model_roles(stack)
        if not roles:
            return
        for name, conf in stack.resources("aws_iam_role_policy").items():
            if referenced_names(conf.get("role"), "aws_iam_role") & roles:
                problems = policy_problems(conf.get("policy"))
                yield Verdict(
                    address("aws_iam_role_policy", name), not problems, "; ".join(problems)
                )
        for name, conf in stack.resources("aws_iam_role_policy_attachment").items():
            if referenced_names(conf.get("role"), "aws_iam_role") & roles:
                yield Verdict(
                    address("aws_iam_role_policy_attachment", name),
                    False,
                    f"managed policy {conf.get('policy_arn')} attached to a model execution role",
                )
        for name in sorted(roles):
            role = stack.resources("aws_iam_role").get(name, {})
            if blocks(role, "inline_policy"):
                yield Verdict(
                    address("aws_iam_role", name), False, "inline_policy on a model execution role"
                )


check = register(ModelExecutionRoleReadsOnlyModelArchives())
