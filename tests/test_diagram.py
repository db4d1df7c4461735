"""tools.diagram: the architecture diagram is generated from the synthesized stacks, so it
shows what is synthesized (a stack or resource added or removed changes it) and the data flow
from the clinical site to the endpoint and its rollback, as the Terraform references say."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections import deque
from pathlib import Path

import pytest

import main
from tools import diagram

NODE = re.compile(r'^\s*(\w+)(?:\["|\[\("|\{\{")(.*?)(?:"\]|"\)\]|"\}\})$')
EDGE = re.compile(r"^\s*(\w+) (?:-- (.*?) -->|-\. (.*?) \.->|-->) (\w+)$")
SUBGRAPH = re.compile(r'^\s*subgraph (\w+)\["(.*)"\]$')


class Parsed:
    """Nodes, subgraphs and edges of a generated Mermaid flowchart."""

    def __init__(self, text: str) -> None:
        self.nodes: dict[str, str] = {}
        self.subgraphs: dict[str, str] = {}
        self.edges: list[tuple[str, str, str]] = []
        for line in text.splitlines():
            if match := SUBGRAPH.match(line):
                self.subgraphs[match.group(1)] = match.group(2)
            elif match := EDGE.match(line):
                label = match.group(2) or match.group(3) or ""
                self.edges.append((match.group(1), label, match.group(4)))
            elif match := NODE.match(line):
                assert match.group(1) not in self.nodes, f"duplicate node {match.group(1)}"
                self.nodes[match.group(1)] = match.group(2)

    def node(self, label_start: str, stack: str) -> str:
        prefix = re.sub(r"\W", "_", stack) + "__"
        (found,) = [
            n
            for n, label in self.nodes.items()
            if n.startswith(prefix) and label.startswith(label_start)
        ]
        return found

    def labels_in(self, stack: str) -> list[str]:
        prefix = re.sub(r"\W", "_", stack) + "__"
        return [label for node, label in self.nodes.items() if node.startswith(prefix)]

    def reachable(self, source: str, target: str) -> bool:
        following = {a: [b for x, _, b in self.edges if x == a] for a, _, _ in self.edges}
        seen, queue = {source}, deque([source])
        while queue:
            current = queue.popleft()
            if current == target:
                return True
            for nxt in following.get(current, []):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return False


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("diagram") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev", "eu-research"], destination)
    return destination


@pytest.fixture(scope="module")
def drawn(synthesized: Path) -> Parsed:
    return Parsed(diagram.render(synthesized))


def stack_names(outdir: Path) -> list[str]:
    return sorted(json.loads((outdir / "manifest.json").read_text())["stacks"])


def test_every_line_is_a_node_an_edge_or_structure(synthesized: Path) -> None:
    structure = {"flowchart LR", "end"}
    for line in diagram.render(synthesized).splitlines():
        stripped = line.strip()
        assert (
            stripped in structure
            or stripped.startswith("%%")
            or SUBGRAPH.match(line)
            or EDGE.match(line)
            or NODE.match(line)
        ), line


def test_edges_join_declared_nodes_or_subgraphs(drawn: Parsed) -> None:
    declared = drawn.nodes.keys() | drawn.subgraphs.keys()
    assert drawn.edges
    for source, _, target in drawn.edges:
        assert source in declared and target in declared, (source, target)


def test_accounts_and_stacks_come_from_the_synth(synthesized: Path, drawn: Parsed) -> None:
    titles = drawn.subgraphs.values()
    for name in stack_names(synthesized):
        # A stack outside its account's region says which (eu-research's datastore).
        assert name in titles or f"{name} · eu-west-1" in titles
    assert "eu-research-fhir · eu-west-1" in titles
    assert "eu-research-data" in titles and "dev-fhir" in titles
    assert "dev account 111111111111 · us-east-1 · HIPAA" in titles
    assert "eu-research account 444444444444 · eu-central-1 · GDPR+EHDS" in titles
    assert "org account 999999999999 · us-east-1 · governance" in titles
    assert not any("staging" in title or "prod" in title for title in titles)


def test_healthlake_only_where_it_is_synthesized(drawn: Parsed) -> None:
    healthlake = sorted(label for label in drawn.nodes.values() if label.startswith("HealthLake"))
    assert healthlake == [
        "HealthLake FHIR R4 datastore<br/>acme-eu-research-fhir",
        "HealthLake FHIR R4 datastore<br/>acme-phi-dev-fhir",
    ]
    assert not any("HealthLake" in label for label in drawn.labels_in("eu-research-data"))


def test_fhir_imports_come_from_the_bucket_the_import_role_reads(drawn: Parsed) -> None:
    """dev's datastore imports from its raw bucket; eu-research's from its own eu-west-1
    bucket, never across regions from the eu-central-1 raw bucket."""
    imports = {(a, b) for a, label, b in drawn.edges if label == "FHIR import"}
    dev = drawn.node("HealthLake", "dev-fhir")
    eu = drawn.node("HealthLake", "eu-research-fhir")
    assert imports == {
        (drawn.node("S3 acme-phi-dev-raw", "dev-data"), dev),
        (drawn.node("S3 acme-eu-research-fhir-eu-west-1", "eu-research-fhir"), eu),
    }
    assert (drawn.node("S3 acme-eu-research-raw", "eu-research-data"), eu) not in imports
    assert drawn.node("2 KMS CMKs<br/>logs, phi-data", "eu-research-fhir")


def test_without_the_import_role_policy_there_is_no_fhir_import(
    synthesized: Path, tmp_path: Path
) -> None:
    """Twin: the edge comes from the role policy, not from the stacks being side by side."""
    copy = Path(shutil.copytree(synthesized, tmp_path / "out"))
    stack = copy / "stacks" / "eu-research-fhir" / "cdk.tf.json"
    configuration = json.loads(stack.read_text())
    del configuration["resource"]["aws_iam_role_policy"]
    stack.write_text(json.dumps(configuration))
    drawn_without = Parsed(diagram.render(copy))
    eu = drawn_without.node("HealthLake", "eu-research-fhir")
    imports = [(a, b) for a, label, b in drawn_without.edges if label == "FHIR import"]
    assert imports == [
        (
            drawn_without.node("S3 acme-phi-dev-raw", "dev-data"),
            drawn_without.node("HealthLake", "dev-fhir"),
        )
    ]
    assert eu not in {b for _, b in imports}


def test_main_resources_of_each_layer_are_drawn(drawn: Parsed) -> None:
    for stack, label in (
        ("dev-network", "Site-to-site VPN<br/>IKEV2"),
        ("dev-network", "Clinical site: customer gateway"),
        ("dev-network", "VPC 10."),
        ("dev-network", "17 VPC endpoints"),
        ("dev-data", "S3 acme-phi-dev-raw"),
        ("dev-data", "5 KMS CMKs"),
        ("dev-data", "Feature group<br/>encounters"),
        ("dev-ml", "SageMaker pipeline"),
        ("dev-ml", "Model registry<br/>readmission-risk"),
        ("dev-ml", "SageMaker endpoint<br/>phi-ml-dev-readmission<br/>created by the deployer"),
        ("dev-ml", "Auto Scaling group"),
        ("dev-ml", "Lambda<br/>phi-ml-dev-readmission-rollback"),
        ("dev-ml", "Lambda<br/>phi-ml-dev-readmission-deployer"),
        ("dev-security", "GuardDuty"),
        ("dev-security", "Security Hub<br/>3 standards"),
        ("org-audit", "Organization CloudTrail"),
        ("org-audit", "AWS Config recorder"),
        ("org-governance", "AWS Organization"),
        ("org-governance", "Control Tower landing zone"),
    ):
        drawn.node(label, stack)
    assert "private: no internet or NAT gateway" in drawn.nodes[drawn.node("VPC", "dev-network")]
    assert "Nitro Enclaves" in drawn.nodes[drawn.node("Auto Scaling group", "dev-ml")]


def test_data_flow_from_the_site_to_the_endpoint_and_its_rollback(drawn: Parsed) -> None:
    chain = [
        ("Clinical site", "dev-network"),
        ("Site-to-site VPN", "dev-network"),
        ("Virtual private gateway", "dev-network"),
        ("VPC", "dev-network"),
        ("17 VPC endpoints", "dev-network"),
        ("S3 acme-phi-dev-raw", "dev-data"),
        # Training starts on a finished feature build, which reads the export.
        ("SageMaker processing pipeline<br/>phi-ml-dev-readmission-features", "dev-ml"),
        ("EventBridge rule<br/>phi-ml-dev-readmission-trigger", "dev-ml"),
        ("SageMaker pipeline", "dev-ml"),
        ("Model registry", "dev-ml"),
        ("EventBridge rule<br/>phi-ml-dev-model-approvals", "dev-ml"),
        ("Lambda<br/>phi-ml-dev-readmission-deployer", "dev-ml"),
        ("SageMaker endpoint", "dev-ml"),
    ]
    nodes = [drawn.node(label, stack) for label, stack in chain]
    edges = {(a, b): label for a, label, b in drawn.edges}
    for source, target in itertools.pairwise(nodes):
        assert (source, target) in edges, (drawn.nodes[source], drawn.nodes[target])
    assert edges[(nodes[8], nodes[9])] == "registers, pending approval"
    assert edges[(nodes[-2], nodes[-1])] == "deploys approved version"
    violations = drawn.node("EventBridge rule<br/>phi-ml-dev-readmission-violations", "dev-ml")
    rollback = drawn.node("Lambda<br/>phi-ml-dev-readmission-rollback", "dev-ml")
    assert edges[(violations, rollback)] == "target"
    assert edges[(rollback, nodes[-1])] == "rolls back"


def test_detection_routes_findings_to_quarantine(drawn: Parsed) -> None:
    guardduty = drawn.node("GuardDuty", "dev-security")
    quarantine = drawn.node("Lambda", "dev-security")
    assert drawn.reachable(guardduty, quarantine)


def test_removing_a_stack_removes_it_from_the_diagram(synthesized: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(synthesized, tmp_path / "out"))
    shutil.rmtree(copy / "stacks" / "dev-fhir")
    without = Parsed(diagram.render(copy))
    assert "dev-fhir" not in without.subgraphs.values()
    assert not any(label.endswith("acme-phi-dev-fhir") for label in without.nodes.values())


def test_adding_a_stack_adds_it_to_the_diagram(synthesized: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(synthesized, tmp_path / "out"))
    shutil.copytree(copy / "stacks" / "dev-fhir", copy / "stacks" / "dev-fhir2")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["stacks"]["dev-fhir2"] = {**manifest["stacks"]["dev-fhir"], "name": "dev-fhir2"}
    manifest["stacks"]["dev-fhir2"]["workingDirectory"] = "stacks/dev-fhir2"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    added = Parsed(diagram.render(copy))
    assert "dev-fhir2" in added.subgraphs.values()
    assert [label for label in added.nodes.values() if label.endswith("acme-phi-dev-fhir")] == [
        "HealthLake FHIR R4 datastore<br/>acme-phi-dev-fhir"
    ] * 2


def test_a_missing_event_target_breaks_the_drawn_flow(synthesized: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(synthesized, tmp_path / "out"))
    stack = copy / "stacks" / "dev-ml" / "cdk.tf.json"
    configuration = json.loads(stack.read_text())
    targets = configuration["resource"]["aws_cloudwatch_event_target"]
    for name in [n for n in targets if n.startswith("pipelines_trigger")]:
        del targets[name]
    stack.write_text(json.dumps(configuration))
    broken = Parsed(diagram.render(copy))
    rule = broken.node("EventBridge rule<br/>phi-ml-dev-readmission-trigger", "dev-ml")
    pipeline = broken.node("SageMaker pipeline", "dev-ml")
    assert not broken.reachable(rule, pipeline)


def test_the_feature_build_reads_the_export_and_writes_the_offline_store(drawn: Parsed) -> None:
    raw = drawn.node("S3 acme-phi-dev-raw", "dev-data")
    build = drawn.node(
        "SageMaker processing pipeline<br/>phi-ml-dev-readmission-features", "dev-ml"
    )
    offline = drawn.node("S3 acme-phi-dev-feature-offline", "dev-data")
    edges = {(a, b): label for a, label, b in drawn.edges}
    assert edges[(raw, build)] == "export"
    assert edges[(build, offline)] == "offline"
    # It makes no model itself: its way to the registry is the training its success starts.
    after = {b for a, _, b in drawn.edges if a == build}
    trigger = drawn.node("EventBridge rule<br/>phi-ml-dev-readmission-trigger", "dev-ml")
    assert drawn.node("Model registry", "dev-ml") not in after
    assert after == {offline, trigger}


def test_an_offline_output_elsewhere_is_not_drawn_into_the_store(
    synthesized: Path, tmp_path: Path
) -> None:
    """Twin: the edge comes from the definition; an output moved off the offline bucket
    loses it."""
    copy = Path(shutil.copytree(synthesized, tmp_path / "out"))
    stack = copy / "stacks" / "dev-ml" / "cdk.tf.json"
    configuration = json.loads(stack.read_text())
    for pipeline in configuration["resource"]["aws_sagemaker_pipeline"].values():
        definition = json.loads(pipeline["pipeline_definition"])
        for step in definition["Steps"]:
            for output in step["Arguments"].get("ProcessingOutputConfig", {}).get("Outputs", []):
                if output["OutputName"] == "offline":
                    output["S3Output"]["S3Uri"] = "s3://somewhere-else/feature-store/"
        pipeline["pipeline_definition"] = json.dumps(definition)
    stack.write_text(json.dumps(configuration))
    moved = Parsed(diagram.render(copy))
    build = moved.node("SageMaker processing pipeline", "dev-ml")
    offline = moved.node("S3 acme-phi-dev-feature-offline", "dev-data")
    assert (build, "offline", offline) not in moved.edges
    assert (moved.node("S3 acme-phi-dev-raw", "dev-data"), "export", build) in moved.edges


def test_the_output_is_deterministic(synthesized: Path) -> None:
    assert diagram.render(synthesized) == diagram.render(synthesized)


def test_cli_writes_the_file_and_filters_environments(
    synthesized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "reports" / "architecture.mmd"
    arguments = ["--out", str(synthesized), "--output", str(output)]
    assert diagram.main(arguments) == 0
    assert output.read_text() == diagram.render(synthesized)
    assert diagram.main([*arguments, "--markdown", "--environment", "dev"]) == 0
    text = output.read_text()
    assert text.startswith("```mermaid\n") and text.endswith("```\n")
    filtered = Parsed(text)
    assert "eu-research-data" not in filtered.subgraphs.values()
    assert "org-audit" not in filtered.subgraphs.values()
    assert "dev-ml" in filtered.subgraphs.values()
    assert diagram.main([*arguments, "--environment", "nowhere"]) == 2
    assert "no stack of environment nowhere" in capsys.readouterr().err


def test_missing_synth_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert diagram.main(["--out", str(tmp_path), "--output", "-"]) == 2
    assert f"{tmp_path / 'manifest.json'}: missing (run `make synth` first)" in (
        capsys.readouterr().err
    )


def readme_diagram(readme: str) -> str:
    """The ```mermaid block of README's Architecture section."""
    section = readme[readme.index("## Architecture") :]
    start = section.index("```mermaid\n")
    end = section.index("```\n", start + len("```mermaid\n")) + len("```\n")
    return section[start:end]


def test_the_readme_shows_the_diagram_of_what_is_synthesized(synthesized: Path) -> None:
    """README must not drift from the code: its diagram is exactly what the tool draws for
    the organization and dev (regenerate: make synth, then python -m tools.diagram
    --environment org --environment dev --markdown --output -)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    drawn = diagram.render(synthesized, environments=["org", "dev"], markdown=True)
    assert readme_diagram(readme) == drawn
    # Twin: a README whose diagram lost a line is caught.
    stale = readme.replace(drawn, drawn.replace("  dev_ml__pipelines_trigger_rule", "  %%", 1))
    assert readme_diagram(stale) != drawn
