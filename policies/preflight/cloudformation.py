"""Every CloudFormation template the stacks hand to AWS, linted by cfn-lint against its bundled
CloudFormation resource schemas for the stack's region: the HealthLake datastore's
`aws_cloudformation_stack`, any `aws_cloudformation_stack_set`, and the AWS Config conformance
packs (their template body is CloudFormation: `AWS::Config::ConfigRule` resources).

cfn-lint's errors (E*) are what CloudFormation refuses (an unknown property, a value outside an
enum, a resource type the region does not have, a malformed template). Its warnings (W*) and
informational matches (I*) are best practice it recommends and CloudFormation accepts, so they
are not findings: a preflight fails only on what the apply would fail on.

Terraform references: a template body may hold `${...}` interpolations that Terraform resolves
before CloudFormation sees the template (the HealthLake key ARN is a cross-stack output).
cfn-lint would judge the unresolved text against the property's pattern and fail. Each one is
replaced by a reference to a declared `String` template parameter (`{"Ref": ...}` for a value
that is wholly a reference, `Fn::Sub` for one that embeds it): a value supplied at deploy time,
which is exactly what it is. cfn-lint then still checks the property exists and takes a string,
and leaves its pattern to the value (the referenced resource is judged where it is defined).
Literal placeholders were rejected: each would have to satisfy the pattern of the property it
stands in for (a KMS ARN, a bucket name), which means guessing what the reference points at.
`$${` is Terraform's escape for a literal `${` (CloudFormation's own `Fn::Sub` syntax) and is
unescaped, not replaced.

A stack set is linted for the region of the stack that declares it; its instances' regions
are not read.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections.abc import Iterator
from typing import Any, Final

from policies.findings import Finding
from policies.preflight.base import (
    CFN_LINT_VERSION,
    TOKEN,
    PreflightSourceError,
    Resource,
    Rule,
    SynthesizedStacks,
    has_token,
    verdict,
)

# The resources whose `template_body` AWS parses as a CloudFormation template.
TEMPLATE_RESOURCES: Final = (
    "aws_cloudformation_stack",
    "aws_cloudformation_stack_set",
    "aws_config_conformance_pack",
    "aws_config_organization_conformance_pack",
)
TEMPLATE_ATTRIBUTE: Final = "template_body"
# The template parameters standing in for Terraform references (see the module docstring).
REFERENCE_PARAMETER: Final = "TerraformReference"
# Terraform's escape for a literal `${` (CloudFormation's Fn::Sub syntax) in a string.
ESCAPED: Final = "$${"
# cfn-lint's rule ids start with the severity: E error, W warning, I informational.
ERROR_PREFIX: Final = "E"

LINT: Final = Rule(
    id="PF_CFN_LINT",
    family="cloudformation",
    title="Embedded CloudFormation templates pass cfn-lint's error rules",
    source=f"cfn-lint {CFN_LINT_VERSION} (its bundled CloudFormation resource schemas)",
)
RULES: Final[tuple[Rule, ...]] = (LINT,)


def check(stacks: SynthesizedStacks) -> list[Finding]:
    api = _cfn_lint_api()
    findings = []
    for resource in _template_resources(stacks):
        body = resource.block.get(TEMPLATE_ATTRIBUTE)
        # A body that is wholly another resource's value (or absent: template_url,
        # template_s3_uri) is not here to judge.
        if not isinstance(body, str) or TOKEN.fullmatch(body.strip()):
            continue
        problem, judged = lint_template(api, body, resource.region)
        findings.append(verdict(LINT, resource, problem, judged=judged))
    return findings


def _cfn_lint_api() -> Any:
    """cfn-lint's Python API, or PreflightSourceError: without it nothing is judged."""
    try:
        return importlib.import_module("cfnlint.api")
    except ImportError as error:
        raise PreflightSourceError(f"cfn-lint cannot be imported ({error})") from None


def _template_resources(stacks: SynthesizedStacks) -> Iterator[Resource]:
    for resource_type in TEMPLATE_RESOURCES:
        yield from stacks.resources(resource_type)


def lint_template(api: Any, body: str, region: str) -> tuple[str | None, str]:
    """(the problem, or None when cfn-lint reports no error; what was judged)."""
    lint_region = region if region and not has_token(region) else api.REGION_PRIMARY
    judged = f"template linted for {lint_region}"
    if lint_region not in api.REGIONS:
        return f"region {lint_region!r} is not one cfn-lint knows", judged
    decoded, parse_errors = _decode(body)
    if decoded is None:
        return "; ".join(parse_errors) or "the template body is not JSON or YAML", judged
    errors = _errors(api, json.dumps(literal_template(decoded), sort_keys=True), lint_region)
    return ("; ".join(errors) if errors else None), judged


# cfn-lint's `api.lint` loads its ~1,700 rules (and the schemas they read) on every call, a
# quarter of a second each time; one runner per region loads them once and lints every template
# of that region.
@functools.cache
def _runner(api: Any, region: str) -> Any:
    return api.Runner(api.ConfigMixIn(regions=[region]))


# cfn-lint is deterministic for a given template, region and version: the same template (an
# unchanged stack, a re-run) is linted once.
@functools.cache
def _errors(api: Any, template: str, region: str) -> tuple[str, ...]:
    try:
        decoded, matches = api.decode_str(template)
        if decoded is not None and not matches:
            matches = list(_runner(api, region).validate_template(decoded))
    except Exception as error:  # cfn-lint crashing on a template is its defect, not a pass
        raise PreflightSourceError(f"cfn-lint failed on a template ({error!r})") from None
    return tuple(sorted({_describe(m) for m in matches if m.rule.id.startswith(ERROR_PREFIX)}))


def _decode(body: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The template as plain data (cfn-lint's decoder reads JSON and YAML, short-form
    intrinsics such as `!Ref` included), or None and cfn-lint's parse errors."""
    decode: Any = importlib.import_module("cfnlint.decode")
    template, matches = decode.decode_str(body)
    if template is None or not isinstance(template, dict):
        return None, [_describe(m) for m in matches or ()]
    # Round-trip through JSON: cfn-lint's node classes carry line marks we do not need, and
    # the substitution below rebuilds plain dicts and lists.
    plain: dict[str, Any] = json.loads(json.dumps(template))
    return plain, []


def _describe(match: Any) -> str:
    path = "/".join(str(part) for part in getattr(match, "path", None) or ())
    return (
        f"{match.rule.id} {path}: {match.message}" if path else f"{match.rule.id} {match.message}"
    )


def literal_template(template: dict[str, Any]) -> dict[str, Any]:
    """The template with each Terraform reference replaced by a String template parameter."""
    references: dict[str, str] = {}
    replaced = _replace(template, references, in_sub=False)
    assert isinstance(replaced, dict)
    if references:
        parameters = dict(replaced.get("Parameters") or {})
        for reference, name in references.items():
            parameters[name] = {
                "Type": "String",
                "Description": f"Terraform resolves {reference} before CloudFormation runs",
            }
        replaced["Parameters"] = parameters
    return replaced


def _replace(value: Any, references: dict[str, str], *, in_sub: bool) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            return {"Fn::Sub": _replace_in_sub(value["Fn::Sub"], references)}
        return {key: _replace(item, references, in_sub=in_sub) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, references, in_sub=in_sub) for item in value]
    return _replace_text(value, references, in_sub=in_sub) if isinstance(value, str) else value


def _replace_text(text: str, references: dict[str, str], *, in_sub: bool) -> Any:
    tokens = _references(text)
    if not tokens:
        return text.replace(ESCAPED, "${")
    if in_sub:
        return _rename(text, tokens, references, literal="${")
    if len(tokens) == 1 and tokens[0].span() == (0, len(text)):
        return {"Ref": _parameter(tokens[0].group(), references)}
    # Wrapped in Fn::Sub, an escaped literal `${` must not be substituted: `${!` says so.
    return {"Fn::Sub": _rename(text, tokens, references, literal="${!")}


def _replace_in_sub(argument: Any, references: dict[str, str]) -> Any:
    """Inside Fn::Sub a reference becomes a `${Parameter}` variable of the same string."""
    if isinstance(argument, str):
        return _replace(argument, references, in_sub=True)
    if isinstance(argument, list) and argument:
        return [
            _replace(argument[0], references, in_sub=True),
            *(_replace(item, references, in_sub=False) for item in argument[1:]),
        ]
    return argument


def _references(text: str) -> list[re.Match[str]]:
    """The Terraform references in `text`; `$${...}` is Terraform's escape for a literal."""
    return [t for t in TOKEN.finditer(text) if t.start() == 0 or text[t.start() - 1] != "$"]


def _parameter(reference: str, references: dict[str, str]) -> str:
    return references.setdefault(reference, f"{REFERENCE_PARAMETER}{len(references)}")


def _rename(
    text: str, tokens: list[re.Match[str]], references: dict[str, str], *, literal: str
) -> str:
    """`text` with each reference written `${<parameter>}` and each escaped `$${` as `literal`."""
    parts: list[str] = []
    position = 0
    for token in tokens:
        parts += [text[position : token.start()].replace(ESCAPED, literal)]
        parts += ["${" + _parameter(token.group(), references) + "}"]
        position = token.end()
    parts.append(text[position:].replace(ESCAPED, literal))
    return "".join(parts)
