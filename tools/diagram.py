"""The architecture diagram, generated from the synthesized stacks (Mermaid flowchart).

    python -m tools.diagram [--out cdktf.out] [--output reports/architecture.mmd] [--markdown]
                            [--environment NAME ...]

Reads OUT/manifest.json and OUT/stacks/*/cdk.tf.json, nothing else: every account (from each
provider's allowed account and default tags), every stack, the main resources of each stack
(ingest, network, data stores and keys, HealthLake, Feature Store, pipeline, registry,
endpoint, enclave hosts, monitoring, audit, detection, governance) and the data flow between
them as the Terraform references say it: ingest -> VPC -> raw bucket -> EventBridge ->
pipeline -> registry (manual approval) -> endpoint -> Model Monitor -> rollback, and raw
bucket -> features pipeline (processing only) -> Feature Store offline bucket. A resource
that is not synthesized is not drawn, so the diagram changes with the code and the
environment files. --output - writes to stdout; --markdown wraps the diagram in a ```mermaid
fence for README or a report.

Exit status: 0 written, 2 the synthesized output is missing or unreadable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_OUTDIR = Path("cdktf.out")
DEFAULT_OUTPUT = Path("reports/architecture.mmd")
HEALTHLAKE_TYPE = "AWS::HealthLake::FHIRDatastore"
SAME_STACK_REFERENCE = re.compile(r"\$\{(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)[.}]")
CROSS_STACK_REFERENCE = re.compile(
    r"data\.terraform_remote_state\.cross-stack-reference-input-([A-Za-z0-9-]+)"
    r"\.outputs\.cross-stack-output-([A-Za-z0-9_-]+)"
)


class DiagramError(Exception):
    """The synthesized output cannot be read; the message names the file and why."""


@dataclass(frozen=True, order=True)
class Address:
    stack: str
    type: str
    name: str


@dataclass(frozen=True)
class StackInfo:
    name: str
    environment: str
    account_id: str
    region: str
    compliance_scope: str
    configuration: Mapping[str, Any]

    def resources(self, resource_type: str) -> dict[str, Mapping[str, Any]]:
        return dict(self.configuration.get("resource", {}).get(resource_type, {}))


@dataclass
class Node:
    id: str
    label: str
    stack: str
    shape: str = "rect"
    members: list[Address] = field(default_factory=list)

    def render(self) -> str:
        text = self.label.replace('"', "#quot;")
        opening, closing = {"rect": ("[", "]"), "store": ("[(", ")]"), "event": ("{{", "}}")}[
            self.shape
        ]
        return f'{self.id}{opening}"{text}"{closing}'


@dataclass(frozen=True, order=True)
class Edge:
    source: str
    target: str
    label: str
    dotted: bool = False

    def render(self) -> str:
        arrow = f"-. {self.label} .->" if self.dotted else f"-- {self.label} -->"
        return (
            f"{self.source} {arrow} {self.target}"
            if self.label
            else f"{self.source} --> {self.target}"
        )


def _identifier(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", "__".join(parts))


def load_stacks(outdir: Path) -> dict[str, StackInfo]:
    manifest_path = outdir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise DiagramError(f"{manifest_path}: missing (run `make synth` first)") from None
    except json.JSONDecodeError as error:
        raise DiagramError(f"{manifest_path}: not JSON ({error})") from None
    stacks: dict[str, StackInfo] = {}
    for name, entry in sorted(manifest.get("stacks", {}).items()):
        path = outdir / entry.get("workingDirectory", f"stacks/{name}") / "cdk.tf.json"
        # A stack whose directory is gone is not part of the output any more.
        if not path.is_file():
            continue
        try:
            configuration = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DiagramError(f"{path}: not JSON ({error})") from None
        providers = configuration.get("provider", {}).get("aws", [{}])
        provider = providers[0] if providers else {}
        tags = (provider.get("default_tags") or [{}])[0].get("tags", {})
        stacks[name] = StackInfo(
            name=name,
            environment=str(tags.get("environment", name)),
            account_id=str((provider.get("allowed_account_ids") or ["?"])[0]),
            region=str(provider.get("region", "?")),
            compliance_scope=str(tags.get("compliance-scope", "")),
            configuration=configuration,
        )
    if not stacks:
        raise DiagramError(f"{manifest_path}: no synthesized stacks")
    return stacks


class Architecture:
    """The stacks' main resources as nodes, and the edges of the data and control flow."""

    def __init__(self, stacks: Mapping[str, StackInfo]) -> None:
        self.stacks = stacks
        self.nodes: dict[str, Node] = {}
        self.node_of: dict[Address, str] = {}
        self.edges: set[Edge] = set()
        self.subgraph_edges: set[Edge] = set()
        # The endpoint a deployer function creates at run time (stack -> endpoint name -> node)
        self.served: dict[str, dict[str, str]] = {}
        # type + logical name, as cross-stack output names begin, per stack
        self._output_prefixes = {
            stack.name: sorted(
                (
                    (f"{kind}{name}", Address(stack.name, kind, name))
                    for kind, named in stack.configuration.get("resource", {}).items()
                    for name in named
                ),
                key=lambda pair: -len(pair[0]),
            )
            for stack in stacks.values()
        }
        for stack in stacks.values():
            self._add_nodes(stack)
        for stack in stacks.values():
            self._add_edges(stack)

    # --- references ---------------------------------------------------------------------

    def references(self, stack: str, value: Any) -> set[Address]:
        """Every resource a configuration value refers to, in its own stack or another."""
        text = value if isinstance(value, str) else json.dumps(value)
        found = {Address(stack, kind, name) for kind, name in SAME_STACK_REFERENCE.findall(text)}
        for source_stack, output in CROSS_STACK_REFERENCE.findall(text):
            for prefix, address in self._output_prefixes.get(source_stack, []):
                if output.startswith(prefix):
                    found.add(address)
                    break
        return found

    def body(self, address: Address) -> Mapping[str, Any]:
        return self.stacks[address.stack].resources(address.type).get(address.name, {})

    def referenced_nodes(self, address: Address, *, depth: int = 2) -> set[str]:
        """Nodes this resource reaches through references, through at most `depth` resources
        that are not nodes themselves (a job definition, an endpoint configuration)."""
        reached: set[str] = set()
        frontier, seen = {address}, {address}
        for _ in range(depth + 1):
            following: set[Address] = set()
            for current in frontier:
                for target in self.references(current.stack, _without_metadata(self.body(current))):
                    if target in seen:
                        continue
                    seen.add(target)
                    if target in self.node_of:
                        reached.add(self.node_of[target])
                    else:
                        following.add(target)
            frontier = following
        reached.discard(self.node_of.get(address, ""))
        return reached

    # --- nodes --------------------------------------------------------------------------

    def _node(
        self, stack: str, key: str, label: str, members: Iterable[Address], shape: str = "rect"
    ) -> None:
        node = Node(_identifier(stack, key), label, stack, shape, sorted(members))
        self.nodes[node.id] = node
        for member in node.members:
            self.node_of[member] = node.id

    def _add_nodes(self, stack: StackInfo) -> None:
        for resource_type, describe in NODE_TYPES.items():
            for name, body in sorted(stack.resources(resource_type).items()):
                described = describe(stack, body)
                if described is not None:
                    label, shape = described
                    self._node(
                        stack.name, name, label, [Address(stack.name, resource_type, name)], shape
                    )
        for body in stack.resources("aws_lambda_function").values():
            variables = _function_variables(body)
            endpoint = variables.get("ENDPOINT_NAME")
            if endpoint and "MODEL_PACKAGE_GROUP" in variables:
                # Not a Terraform resource: the deployer creates it for each approved version,
                # and its environment names it.
                label = f"SageMaker endpoint<br/>{endpoint}<br/>created by the deployer"
                self._node(stack.name, f"served-{endpoint}", label, [])
                self.served.setdefault(stack.name, {})[endpoint] = _identifier(
                    stack.name, f"served-{endpoint}"
                )
        for resource_type, summarize in GROUPED_TYPES.items():
            named = stack.resources(resource_type)
            if named:
                label = summarize(stack, named)
                members = [Address(stack.name, resource_type, n) for n in named]
                self._node(stack.name, resource_type, label, members)

    def nodes_of_type(self, stack: str, resource_type: str) -> list[tuple[Address, str]]:
        return sorted(
            (address, node)
            for address, node in self.node_of.items()
            if address.stack == stack and address.type == resource_type
        )

    def nodes_of_environment(self, environment: str, resource_type: str) -> list[str]:
        return sorted(
            {
                node
                for address, node in self.node_of.items()
                if address.type == resource_type
                and self.stacks[address.stack].environment == environment
            }
        )

    # --- edges --------------------------------------------------------------------------

    def _edge(self, source: str, target: str, label: str, *, dotted: bool = False) -> None:
        if source != target:
            self.edges.add(Edge(source, target, label, dotted))

    def _connect(
        self, stack: StackInfo, holder_type: str, from_type: str, to_type: str, label: str
    ) -> None:
        """from -> to wherever a `holder` resource refers to both (or is one of them)."""
        for name, body in stack.resources(holder_type).items():
            holder = Address(stack.name, holder_type, name)
            referenced = self.references(stack.name, _without_metadata(body)) | {holder}
            sources = [
                self.node_of[a] for a in referenced if a.type == from_type and a in self.node_of
            ]
            targets = [
                self.node_of[a] for a in referenced if a.type == to_type and a in self.node_of
            ]
            for source in sources:
                for target in targets:
                    self._edge(source, target, label)

    def _add_edges(self, stack: StackInfo) -> None:
        # Ingest: clinical site -> VPN / Direct Connect -> virtual private gateway -> VPC.
        self._connect(
            stack, "aws_vpn_connection", "aws_customer_gateway", "aws_vpn_connection", "IPsec"
        )
        self._connect(stack, "aws_vpn_connection", "aws_vpn_connection", "aws_vpn_gateway", "")
        self._connect(
            stack,
            "aws_dx_gateway_association",
            "aws_dx_gateway",
            "aws_vpn_gateway",
            "Direct Connect",
        )
        self._connect(stack, "aws_vpn_gateway", "aws_vpn_gateway", "aws_vpc", "BGP routes")
        self._connect(stack, "aws_vpc_endpoint", "aws_vpc", "aws_vpc_endpoint", "")
        self._landing_edges(stack)
        self._fhir_import_edges(stack)
        self._event_edges(stack)
        self._ml_edges(stack)
        self._audit_edges(stack)

    def _landing_bucket(self, environment: str) -> str | None:
        """The bucket new data lands in: the one that emits its object events to EventBridge."""
        for stack in self.stacks.values():
            if stack.environment != environment:
                continue
            for body in stack.resources("aws_s3_bucket_notification").values():
                if body.get("eventbridge") is True:
                    for address in self.references(stack.name, body.get("bucket", "")):
                        if address in self.node_of:
                            return self.node_of[address]
        return None

    def _landing_edges(self, stack: StackInfo) -> None:
        endpoints = stack.resources("aws_vpc_endpoint")
        s3_gateway = any(
            b.get("service_name", "").endswith(".s3") and b.get("vpc_endpoint_type") == "Gateway"
            for b in endpoints.values()
        )
        landing = self._landing_bucket(stack.environment)
        if s3_gateway and landing:
            group = self.node_of[Address(stack.name, "aws_vpc_endpoint", sorted(endpoints)[0])]
            self._edge(group, landing, "S3 gateway endpoint")

    def _fhir_import_edges(self, stack: StackInfo) -> None:
        """bucket -> datastore for each bucket the datastore's import role reads (a role that
        HealthLake assumes): the raw bucket, or the datastore region's own FHIR bucket."""
        datastores = [
            node
            for _, node in self.nodes_of_type(stack.name, "aws_cloudformation_stack")
            if self.nodes[node].label.startswith("HealthLake")
        ]
        healthlake_roles = {
            Address(stack.name, "aws_iam_role", name)
            for name, role in stack.resources("aws_iam_role").items()
            if "healthlake.amazonaws.com" in str(role.get("assume_role_policy", ""))
        }
        for name, policy in stack.resources("aws_iam_role_policy").items():
            if not self.references(stack.name, policy.get("role", "")) & healthlake_roles:
                continue
            address = Address(stack.name, "aws_iam_role_policy", name)
            for bucket in self.referenced_nodes(address, depth=0):
                if self._is_type(bucket, "aws_s3_bucket"):
                    for datastore in datastores:
                        self._edge(bucket, datastore, "FHIR import")

    def _event_edges(self, stack: StackInfo) -> None:
        for name, rule in stack.resources("aws_cloudwatch_event_rule").items():
            rule_node = self.node_of[Address(stack.name, "aws_cloudwatch_event_rule", name)]
            pattern = str(rule.get("event_pattern", ""))
            for source in self.referenced_nodes(
                Address(stack.name, "aws_cloudwatch_event_rule", name)
            ):
                self._edge(source, rule_node, "events")
            sources = json.loads(pattern).get("source", []) if pattern.startswith("{") else []
            for service, resource_type in (
                ("aws.guardduty", "aws_guardduty_detector"),
                ("aws.securityhub", "aws_securityhub_account"),
            ):
                if service in sources:
                    for _, node in self.nodes_of_type(stack.name, resource_type):
                        self._edge(node, rule_node, "findings")
            for group_address, group_node in self.nodes_of_type(
                stack.name, "aws_sagemaker_model_package_group"
            ):
                group_name = self.body(group_address).get("model_package_group_name", "")
                if group_name and f'"ModelPackageGroupName": ["{group_name}"]' in pattern:
                    self._edge(group_node, rule_node, "approval decision")
        for target in stack.resources("aws_cloudwatch_event_target").values():
            rules = self.references(stack.name, target.get("rule", ""))
            destinations = self.references(stack.name, target.get("arn", ""))
            for rule_address in rules:
                for destination in destinations:
                    if rule_address in self.node_of and destination in self.node_of:
                        self._edge(self.node_of[rule_address], self.node_of[destination], "target")

    def _offline_store_buckets(self) -> set[str]:
        """The buckets feature groups keep their offline store in."""
        return {
            bucket
            for other in self.stacks.values()
            for address, _ in self.nodes_of_type(other.name, "aws_sagemaker_feature_group")
            for bucket in self.referenced_nodes(address, depth=0)
            if self._is_type(bucket, "aws_s3_bucket")
        }

    def _processing_edges(self, stack: StackInfo, address: Address, pipeline: str) -> None:
        """Landing bucket -> pipeline for a job input read from it, and pipeline -> offline
        store bucket for a job output written there (labelled with the input's or output's
        name in the definition)."""
        definition = json_document(self.body(address).get("pipeline_definition"))
        if definition is None:
            return
        landing = self._landing_bucket(stack.environment)
        offline = self._offline_store_buckets()
        for step in definition.get("Steps", []):
            arguments = step.get("Arguments", {}) if isinstance(step, dict) else {}
            for item in arguments.get("ProcessingInputs", []):
                uri = item.get("S3Input", {}).get("S3Uri", "")
                for bucket in self.references(stack.name, uri):
                    if landing is not None and self.node_of.get(bucket) == landing:
                        self._edge(landing, pipeline, str(item.get("InputName", "")))
            for item in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
                uri = item.get("S3Output", {}).get("S3Uri", "")
                for bucket in self.references(stack.name, uri):
                    if self.node_of.get(bucket) in offline:
                        self._edge(pipeline, self.node_of[bucket], str(item.get("OutputName", "")))

    def _ml_edges(self, stack: StackInfo) -> None:
        for pipeline_address, pipeline in self.nodes_of_type(stack.name, "aws_sagemaker_pipeline"):
            self._processing_edges(stack, pipeline_address, pipeline)
            definition = str(self.body(pipeline_address).get("pipeline_definition", ""))
            for group_address, group in self.nodes_of_type(
                stack.name, "aws_sagemaker_model_package_group"
            ):
                group_name = self.body(group_address).get("model_package_group_name", "")
                if group_name and group_name in definition:
                    approval = "PendingManualApproval" in definition
                    self._edge(
                        pipeline, group, "registers, pending approval" if approval else "registers"
                    )
        for _, group in self.nodes_of_type(stack.name, "aws_sagemaker_model_package_group"):
            for _, endpoint in self.nodes_of_type(stack.name, "aws_sagemaker_endpoint"):
                # Deployment of an approved version is a person's decision, not a reference.
                self._edge(group, endpoint, "approved version", dotted=True)
        self._deployer_edges(stack)

    def _deployer_edges(self, stack: StackInfo) -> None:
        """The deployer creates the endpoint; the rollback function switches it back."""
        served = self.served.get(stack.name, {})
        for address, function in self.nodes_of_type(stack.name, "aws_lambda_function"):
            variables = _function_variables(self.body(address))
            endpoint = served.get(variables.get("ENDPOINT_NAME", ""))
            if endpoint is None:
                continue
            deploys = "MODEL_PACKAGE_GROUP" in variables
            self._edge(function, endpoint, "deploys approved version" if deploys else "rolls back")
        for resource_type, label in (
            ("aws_sagemaker_monitoring_schedule", "data capture"),
            ("aws_lambda_function", "rolls back"),
        ):
            for address, node in self.nodes_of_type(stack.name, resource_type):
                for endpoint in self.referenced_nodes(address):
                    if self._is_type(endpoint, "aws_sagemaker_endpoint"):
                        monitored = label == "data capture"
                        source, target = (endpoint, node) if monitored else (node, endpoint)
                        self._edge(source, target, label)
        for address, node in self.nodes_of_type(stack.name, "aws_sagemaker_feature_group"):
            for bucket in self.referenced_nodes(address, depth=0):
                if self._is_type(bucket, "aws_s3_bucket"):
                    self._edge(node, bucket, "offline store")

    def _audit_edges(self, stack: StackInfo) -> None:
        for address, trail in self.nodes_of_type(stack.name, "aws_cloudtrail"):
            body = self.body(address)
            for bucket in self.referenced_nodes(address, depth=0):
                if self._is_type(bucket, "aws_s3_bucket"):
                    self._edge(trail, bucket, "log files")
            selectors = [body.get("event_selector", []), body.get("advanced_event_selector", [])]
            watched = json.dumps(selectors)
            for other in self.stacks.values():
                if other is stack:
                    continue
                names = [b.get("bucket", "") for b in other.resources("aws_s3_bucket").values()]
                if any(n and f"arn:aws:s3:::{n}/" in watched for n in names):
                    self.subgraph_edges.add(
                        Edge(_identifier("stack", other.name), trail, "S3 data events", dotted=True)
                    )
        self._governance_edges(stack)

    def _governance_edges(self, stack: StackInfo) -> None:
        for _, recorder in self.nodes_of_type(stack.name, "aws_config_configuration_recorder"):
            for channel in stack.resources("aws_config_delivery_channel").values():
                for target in self.references(stack.name, _without_metadata(channel)):
                    if target.type == "aws_s3_bucket" and target in self.node_of:
                        self._edge(recorder, self.node_of[target], "snapshots")
            for _, pack in self.nodes_of_type(stack.name, "aws_config_conformance_pack"):
                self._edge(recorder, pack, "evaluates")
        for _, organization in self.nodes_of_type(stack.name, "aws_organizations_organization"):
            # SCPs never restrict the management account itself.
            members = {s.account_id for s in self.stacks.values()} - {stack.account_id}
            for account in sorted(members):
                self.subgraph_edges.add(
                    Edge(organization, _identifier("account", account), "SCPs", dotted=True)
                )

    def _is_type(self, node_id: str, resource_type: str) -> bool:
        return any(m.type == resource_type for m in self.nodes[node_id].members)

    # --- output -------------------------------------------------------------------------

    def mermaid(self) -> str:
        lines = [
            "%% Generated by `python -m tools.diagram` from the synthesized stacks: do not edit.",
            "flowchart LR",
        ]
        accounts: dict[str, list[StackInfo]] = {}
        for stack in self.stacks.values():
            accounts.setdefault(stack.account_id, []).append(stack)
        for account, members in sorted(accounts.items()):
            environments = sorted({s.environment for s in members})
            scopes = sorted({s.compliance_scope for s in members if s.compliance_scope})
            title = f"{' + '.join(environments)} account {account} · {members[0].region}" + (
                f" · {', '.join(scopes)}" if scopes else ""
            )
            lines.append(f'  subgraph {_identifier("account", account)}["{title}"]')
            for stack in sorted(members, key=lambda s: s.name):
                # A stack in another region than its account's first (a FHIR datastore where
                # the environment's region has no HealthLake) says where it is.
                elsewhere = f" · {stack.region}" if stack.region != members[0].region else ""
                lines.append(
                    f'    subgraph {_identifier("stack", stack.name)}["{stack.name}{elsewhere}"]'
                )
                stack_nodes = sorted(
                    (n for n in self.nodes.values() if n.stack == stack.name), key=lambda n: n.id
                )
                lines.extend(f"      {node.render()}" for node in stack_nodes)
                lines.append("    end")
            lines.append("  end")
        lines.extend(f"  {edge.render()}" for edge in sorted(self.edges | self.subgraph_edges))
        return "\n".join(lines) + "\n"


def json_document(value: Any) -> dict[str, Any] | None:
    """A JSON object held in a string attribute, or None."""
    try:
        document = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _without_metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "//"}


# --- how each main resource type is drawn -----------------------------------------------------

Describe = Callable[[StackInfo, Mapping[str, Any]], tuple[str, str] | None]


def _healthlake(stack: StackInfo, body: Mapping[str, Any]) -> tuple[str, str] | None:
    template = json.loads(str(body.get("template_body", "{}")) or "{}")
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == HEALTHLAKE_TYPE:
            properties = resource.get("Properties", {})
            version = properties.get("DatastoreTypeVersion", "")
            return (
                f"HealthLake FHIR {version} datastore<br/>{properties.get('DatastoreName', '')}",
                "store",
            )
    return f"CloudFormation stack<br/>{body.get('name', '')}", "rect"


def _bucket(stack: StackInfo, body: Mapping[str, Any]) -> tuple[str, str]:
    locked = " · Object Lock" if body.get("object_lock_enabled") else ""
    return f"S3 {body.get('bucket', '')}{locked}", "store"


def _vpc(stack: StackInfo, body: Mapping[str, Any]) -> tuple[str, str]:
    gateways = [
        kind
        for kind in ("aws_internet_gateway", "aws_nat_gateway", "aws_egress_only_internet_gateway")
        if stack.resources(kind)
    ]
    exposure = "with " + ", ".join(gateways) if gateways else "private: no internet or NAT gateway"
    return f"VPC {body.get('cidr_block', '')}<br/>{exposure}", "rect"


def _enclave_hosts(stack: StackInfo, body: Mapping[str, Any]) -> tuple[str, str]:
    template = next(iter(stack.resources("aws_launch_template").values()), {})
    enclaves = " · Nitro Enclaves" if template.get("enclave_options", {}).get("enabled") else ""
    instance_type = template.get("instance_type", "")
    return f"Auto Scaling group {body.get('name', '')}<br/>{instance_type}{enclaves}", "rect"


# Step types that make a model; a pipeline without any (a feature build) only processes data.
MODEL_STEP_TYPES = frozenset({"Training", "Tuning", "AutoML", "Model", "RegisterModel"})


def _pipeline(stack: StackInfo, body: Mapping[str, Any]) -> tuple[str, str]:
    definition = json_document(body.get("pipeline_definition")) or {}
    pending = list(definition.get("Steps", []))
    types = set()
    while pending:
        step = pending.pop()
        if isinstance(step, dict):
            types.add(step.get("Type"))
            arguments = step.get("Arguments", {})
            pending += arguments.get("IfSteps", []) + arguments.get("ElseSteps", [])
    kind = (
        "SageMaker pipeline"
        if types & MODEL_STEP_TYPES or not types
        else ("SageMaker processing pipeline")
    )
    return f"{kind}<br/>{body.get('pipeline_name', '')}", "rect"


def _function_variables(body: Mapping[str, Any]) -> dict[str, str]:
    environment = body.get("environment") or {}
    variables = environment.get("variables") if isinstance(environment, dict) else None
    return {str(k): str(v) for k, v in (variables or {}).items()}


def _named(prefix: str, key: str, shape: str = "rect") -> Describe:
    def describe(stack: StackInfo, body: Mapping[str, Any]) -> tuple[str, str]:
        return f"{prefix}<br/>{body.get(key, '')}".removesuffix("<br/>"), shape

    return describe


NODE_TYPES: dict[str, Describe] = {
    "aws_customer_gateway": _named("Clinical site: customer gateway", "ip_address"),
    "aws_vpn_connection": lambda s, b: (
        "Site-to-site VPN<br/>" + "/".join(v.upper() for v in b.get("tunnel1_ike_versions", [])),
        "rect",
    ),
    "aws_dx_gateway": _named("Direct Connect gateway", "name"),
    "aws_vpn_gateway": lambda s, b: ("Virtual private gateway", "rect"),
    "aws_vpc": _vpc,
    "aws_s3_bucket": _bucket,
    "aws_cloudformation_stack": _healthlake,
    "aws_sagemaker_feature_group": _named("Feature group", "feature_group_name", "store"),
    "aws_sagemaker_pipeline": _pipeline,
    "aws_sagemaker_model_package_group": _named("Model registry", "model_package_group_name"),
    "aws_sagemaker_endpoint": _named("SageMaker endpoint", "name"),
    "aws_sagemaker_monitoring_schedule": _named("Model Monitor", "name"),
    "aws_autoscaling_group": _enclave_hosts,
    "aws_cloudwatch_event_rule": _named("EventBridge rule", "name", "event"),
    "aws_lambda_function": _named("Lambda", "function_name"),
    "aws_sns_topic": _named("SNS topic", "name"),
    "aws_cloudtrail": lambda s, b: (
        ("Organization CloudTrail" if b.get("is_organization_trail") else "CloudTrail")
        + f"<br/>{b.get('name', '')}",
        "rect",
    ),
    "aws_config_configuration_recorder": lambda s, b: ("AWS Config recorder", "rect"),
    "aws_config_conformance_pack": _named("Config conformance pack", "name"),
    "aws_config_configuration_aggregator": lambda s, b: ("Config aggregator", "rect"),
    "aws_guardduty_detector": lambda s, b: ("GuardDuty", "rect"),
    "aws_securityhub_account": lambda s, b: (
        f"Security Hub<br/>{len(s.resources('aws_securityhub_standards_subscription'))} standards",
        "rect",
    ),
    "aws_organizations_organization": lambda s, b: (
        f"AWS Organization<br/>{len(s.resources('aws_organizations_account'))} accounts · "
        f"{len(s.resources('aws_organizations_organizational_unit'))} OUs · "
        f"{len(s.resources('aws_organizations_policy'))} SCPs",
        "rect",
    ),
    "aws_controltower_landing_zone": lambda s, b: (
        f"Control Tower landing zone<br/>{len(s.resources('aws_controltower_control'))} controls",
        "rect",
    ),
}


def _endpoints(stack: StackInfo, named: Mapping[str, Mapping[str, Any]]) -> str:
    region = f"com.amazonaws.{stack.region}."
    services = sorted(str(b.get("service_name", "")).removeprefix(region) for b in named.values())
    return f"{len(services)} VPC endpoints<br/>{', '.join(services)}"


def _keys(stack: StackInfo, named: Mapping[str, Mapping[str, Any]]) -> str:
    aliases = sorted(
        str(alias.get("name", "")).rsplit("/", 1)[-1]
        for alias in stack.resources("aws_kms_alias").values()
    )
    return f"{len(named)} KMS CMKs<br/>{', '.join(aliases)}"


# Many of a kind in one stack drawn as one node.
GROUPED_TYPES: dict[str, Callable[[StackInfo, Mapping[str, Mapping[str, Any]]], str]] = {
    "aws_vpc_endpoint": _endpoints,
    "aws_kms_key": _keys,
}


def render(outdir: Path, *, environments: Sequence[str] = (), markdown: bool = False) -> str:
    """The diagram of every synthesized stack, or of the stacks of the named environments."""
    stacks = load_stacks(outdir)
    if environments:
        unknown = sorted(set(environments) - {s.environment for s in stacks.values()})
        if unknown:
            known = ", ".join(sorted({s.environment for s in stacks.values()}))
            raise DiagramError(f"{outdir}: no stack of environment {unknown[0]} (found: {known})")
        stacks = {n: s for n, s in stacks.items() if s.environment in environments}
    diagram = Architecture(stacks).mermaid()
    return f"```mermaid\n{diagram}```\n" if markdown else diagram


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.diagram", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTDIR, help="synthesized output")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="file, or - for stdout")
    parser.add_argument("--markdown", action="store_true", help="wrap in a ```mermaid fence")
    parser.add_argument(
        "--environment",
        action="append",
        default=[],
        help="draw only this environment's stacks (repeat for several; default: all)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        text = render(
            arguments.out, environments=arguments.environment, markdown=arguments.markdown
        )
    except DiagramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.output == "-":
        sys.stdout.write(text)
        return 0
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output} ({len(text.splitlines())} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
