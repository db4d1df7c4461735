"""Stack checks: checkov graph checks whose verdicts come from Python code over a whole stack.

Some controls are properties of a stack, not of one resource: the VPC has an endpoint for each
required service, no gateway attaches to it, a production stack protects its data stores. A
Python resource check sees one resource's configuration only. checkov's YAML graph checks see
connections, but their `and` of a connection with an attribute means "every connected resource
satisfies it", so they cannot say "one endpoint per required service"; and under
`--framework terraform_json` the graph holds no provider vertex, so no YAML check can tell a
production stack (its provider's `default_tags`) from another.

So a `StackCheck` is a checkov `BaseGraphCheck` whose `run` is Python. Loading its file with
`--external-checks-dir` registers it in checkov's Terraform graph-check registry (the one the
terraform_json runner uses); checkov then calls `run(graph)` with the graph of everything it
parsed. `run` groups the vertices by stack directory, reads the Terraform JSON files of that
directory that checkov parsed (whole, provider block included: the graph has no provider
vertex), asks the check for one verdict per judged resource, and returns the judged
vertices, so checkov reports them like any graph check: `aws_vpc.<name>` in
`/<stack>/cdk.tf.json`, with line numbers. Resource addresses come from checkov's own
vertices, never rebuilt by us.

This relies on checkov's graph-check interface (`BaseGraphCheck.run`, the registry's `checks`
list), which checkov 3.3.30 (the pinned version) uses for every graph check; the tests run real
checkov over real and mutated stacks, so a checkov upgrade that changes it fails them.
"""

from __future__ import annotations

import json
import logging
import re
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from checkov.common.bridgecrew.check_type import CheckType
from checkov.common.checks_infra.registry import get_graph_checks_registry
from checkov.common.graph.checks_infra.base_check import BaseGraphCheck
from checkov.common.graph.graph_builder import CustomAttributes
from checkov.common.models.enums import CheckCategories
from checkov.runner_filter import RunnerFilter

from policies.checks._conf import blocks
from policies.checks._tags import default_tags, is_aliased

logger = logging.getLogger(__name__)

TERRAFORM_JSON_SUFFIX = ".tf.json"
_VertexResults = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


class Verdict(NamedTuple):
    """One judged resource (`aws_vpc.<name>`) and why it passed or failed."""

    address: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class Stack:
    """One stack: Terraform JSON files of one directory, merged as Terraform merges them."""

    directory: Path
    resources_by_type: dict[str, dict[str, dict[str, Any]]]
    providers: list[dict[str, Any]]

    @classmethod
    def load(cls, directory: Path, files: Iterable[Path]) -> Stack:
        resources: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        providers: list[dict[str, Any]] = []
        for path in sorted(files):
            document = json.loads(path.read_text(encoding="utf-8"))
            for resource_type, named in _objects(document.get("resource")):
                for name, conf in _objects(named):
                    if name != "//" and isinstance(conf, dict):
                        resources[resource_type][name] = conf
            for provider_name, configs in _objects(document.get("provider")):
                if provider_name == "aws":
                    providers.extend(c for c in _as_list(configs) if isinstance(c, dict))
        return cls(directory, dict(resources), providers)

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """This stack's resources of one type, by name."""
        return self.resources_by_type.get(resource_type, {})

    def default_tags(self) -> dict[str, str]:
        """The default (unaliased) AWS provider's `default_tags`."""
        for provider in self.providers:
            if not is_aliased(provider):
                return default_tags(provider)
        return {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _objects(value: Any) -> Iterator[tuple[str, Any]]:
    """The members of a JSON object, or of each object of a list of them (HCL JSON allows both)."""
    for item in _as_list(value):
        if isinstance(item, dict):
            yield from item.items()


def address(resource_type: str, name: str) -> str:
    return f"{resource_type}.{name}"


def referenced_names(value: Any, resource_type: str) -> set[str]:
    """Names of `resource_type` resources that `value` interpolates (`${aws_vpc.<name>.id}`)."""
    text = value if isinstance(value, str) else json.dumps(value)
    pattern = r"\$\{" + re.escape(resource_type) + r"\.([A-Za-z0-9_-]+)[.}\[]"
    return set(re.findall(pattern, text))


def refers_to(value: Any, resource_type: str, name: str) -> bool:
    return name in referenced_names(value, resource_type)


def lifecycle_prevents_destroy(conf: dict[str, Any]) -> bool:
    return any(lifecycle.get("prevent_destroy") is True for lifecycle in blocks(conf, "lifecycle"))


class StackCheck(BaseGraphCheck):
    """A check judging resources with the whole stack in view. Subclasses implement
    `evaluate`; `register(check)` makes checkov run it."""

    def __init__(
        self, *, name: str, id: str, category: CheckCategories, judged_types: Sequence[str]
    ) -> None:
        super().__init__()
        self.name = name
        self.id = id
        self.category = category.name
        # The resource types whose vertices this check may report (the gate's inventory).
        self.resource_types = list(judged_types)

    @abstractmethod
    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        """One verdict per judged resource of `stack`; resources out of scope get none."""

    def run(self, graph_connector: Any) -> _VertexResults:
        """checkov's entry point: (passed, failed, unknown) vertices of the whole graph."""
        files_by_stack: dict[Path, set[Path]] = defaultdict(set)
        vertices_by_stack: dict[Path, dict[str, dict[str, Any]]] = defaultdict(dict)
        for vertex in _vertices(graph_connector):
            file_path = str(vertex.get(CustomAttributes.FILE_PATH, ""))
            if not file_path.endswith(TERRAFORM_JSON_SUFFIX):
                continue
            directory = Path(file_path).parent
            files_by_stack[directory].add(Path(file_path))
            if vertex.get(CustomAttributes.BLOCK_TYPE) == "resource":
                vertices_by_stack[directory][str(vertex.get(CustomAttributes.ID))] = vertex
        passed: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for directory, vertices in sorted(vertices_by_stack.items()):
            for vertex, verdict_passed in self._judge(
                directory, files_by_stack[directory], vertices
            ):
                (passed if verdict_passed else failed).append(vertex)
        return passed, failed, []

    def _judge(
        self, directory: Path, files: set[Path], vertices: dict[str, dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], bool]]:
        try:
            verdicts = list(self.evaluate(Stack.load(directory, files)))
        except Exception:
            # checkov runs graph checks in a thread pool and drops a check whose thread
            # raises: a crash must fail the judged resources, never pass them silently.
            logger.exception("%s could not evaluate the stack in %s", self.id, directory)
            for vertex in vertices.values():
                if vertex.get(CustomAttributes.RESOURCE_TYPE) in self.resource_types:
                    yield vertex, False
            return
        for verdict in verdicts:
            judged = vertices.get(verdict.address)
            if judged is None:
                logger.error("%s judged %s, which checkov did not parse", self.id, verdict)
                continue
            logger.debug("%s %s: %s", self.id, directory, verdict)
            yield judged, verdict.passed


def _vertices(graph_connector: Any) -> Iterator[dict[str, Any]]:
    """Vertex attributes from checkov's graph: rustworkx (default) or networkx."""
    if type(graph_connector).__module__.startswith("networkx"):
        for _, attributes in graph_connector.nodes(data=True):
            yield attributes
    else:
        # checkov's rustworkx payloads are (index, attributes) pairs.
        for _, attributes in graph_connector.nodes():
            yield attributes


def register(check: StackCheck) -> StackCheck:
    """Add `check` to the graph-check registry the terraform and terraform_json runners use,
    as checkov does for external YAML checks (first definition of an id wins)."""
    registry = get_graph_checks_registry(CheckType.TERRAFORM)
    if not any(existing.id == check.id for existing in registry.checks):
        RunnerFilter.notify_external_check(check.id)
        registry.checks.append(check)
    return check
