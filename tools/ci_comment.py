"""Post the pull request's plan summary as one comment, updated in place on every push.

    python -m tools.ci_comment --plans DIR --changes FILE --repository OWNER/NAME \
        --pull-request N [--commit SHA] [--run-url URL] [--dry-run]

DIR holds the summaries `python -m tools.deploy plan` wrote (<stack>.json); FILE is the
`changed` record of `python -m tools.synth_digest` (stacks added, changed, removed). The body
starts with a hidden marker; the comment carrying it is found among the pull request's
comments and edited, so a pull request has one plan comment however often it is pushed. A
changed stack without a summary (its plan job failed before writing one) is shown as such.

The GitHub REST API is called with the token in GITHUB_TOKEN (GITHUB_API_URL overrides the
API address, as on GitHub Enterprise). --dry-run prints the body instead.
Exit status: 0 posted or printed, 1 the API refused, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MARKER = "<!-- phi-ml-platform:plan-summary -->"
# GitHub refuses comment bodies over 65,536 characters; the rest is in the run's artifacts.
MAX_BODY_CHARACTERS = 65_000
MAX_ADDRESSES_PER_STACK = 50
DEFAULT_API_URL = "https://api.github.com"
PAGE_SIZE = 100
ACTION_SYMBOLS = {
    ("create",): "+",
    ("update",): "~",
    ("delete",): "-",
    ("delete", "create"): "-/+",
    ("create", "delete"): "+/-",
}


class InputError(Exception):
    """A summary or changes file is missing or malformed; the message names it and why."""


class CommentError(Exception):
    """GitHub refused or could not be reached; the message says which call and why."""


@dataclass(frozen=True)
class StackPlan:
    stack: str
    environment: str
    outcome: str
    add: int | None
    change: int | None
    destroy: int | None
    resource_changes: tuple[tuple[str, tuple[str, ...]], ...]
    note: str
    problem: str


def read_plans(plans_dir: Path) -> dict[str, StackPlan]:
    plans: dict[str, StackPlan] = {}
    for path in sorted(plans_dir.glob("*.json")) if plans_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            plans[data["stack"]] = StackPlan(
                stack=data["stack"],
                environment=data.get("environment", ""),
                outcome=data["outcome"],
                add=data.get("add"),
                change=data.get("change"),
                destroy=data.get("destroy"),
                resource_changes=tuple(
                    (c["address"], tuple(c["actions"])) for c in data.get("resource_changes", [])
                ),
                note=data.get("note", ""),
                problem=data.get("problem", ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(f"{path}: not a plan summary of tools.deploy ({error})") from None
    return plans


def read_changes(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
        return {key: [str(name) for name in data[key]] for key in ("added", "changed", "removed")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a `synth_digest changed` record ({error})") from None


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _stack_details(plan: StackPlan) -> str:
    lines = [f"<details><summary><code>{plan.stack}</code>: {plan.outcome}</summary>", ""]
    if plan.problem:
        lines += ["```", plan.problem.strip(), "```"]
    if plan.resource_changes:
        lines.append("```diff")
        for address, actions in plan.resource_changes[:MAX_ADDRESSES_PER_STACK]:
            lines.append(f"{ACTION_SYMBOLS.get(actions, '~')} {address}")
        lines.append("```")
        hidden = len(plan.resource_changes) - MAX_ADDRESSES_PER_STACK
        if hidden > 0:
            lines.append(f"... and {hidden} more (the run's plan artifacts have them all)")
    lines += ["", "</details>"]
    return "\n".join(lines)


def build_body(
    changes: Mapping[str, Sequence[str]],
    plans: Mapping[str, StackPlan],
    *,
    commit: str = "",
    run_url: str = "",
) -> str:
    """The comment: marker, a table of the changed stacks' plans, then each stack's changes."""
    where = " · ".join(
        part
        for part in (
            f"commit `{commit[:12]}`" if commit else "",
            f"[run]({run_url})" if run_url else "",
        )
        if part
    )
    lines = [MARKER, "### Terraform plan of the stacks this pull request changes", ""]
    if where:
        lines += [where, ""]
    to_plan = sorted({*changes.get("added", ()), *changes.get("changed", ())})
    if not to_plan:
        lines.append("No synthesized stack differs from the base branch: nothing to plan.")
    else:
        lines += [
            "| stack | environment | | plan | add | change | destroy |",
            "|---|---|---|---|---:|---:|---:|",
        ]
        added = set(changes.get("added", ()))
        for name in to_plan:
            kind = "new" if name in added else "changed"
            plan = plans.get(name)
            if plan is None:
                lines.append(
                    f"| `{name}` | | {kind} | no plan (its job failed: see the run) | | | |"
                )
                continue
            lines.append(
                f"| `{name}` | {plan.environment} | {kind} | {plan.outcome} | "
                f"{_count(plan.add)} | {_count(plan.change)} | {_count(plan.destroy)} |"
            )
    removed = changes.get("removed", ())
    if removed:
        lines += [
            "",
            "**Stacks removed** (their resources are not destroyed by an apply: plan "
            f"`terraform plan -destroy` in them by hand): {', '.join(f'`{n}`' for n in removed)}",
        ]
    notes = [f"- `{p.stack}`: {p.note}" for name in to_plan if (p := plans.get(name)) and p.note]
    if notes:
        lines += ["", *notes]
    details = [_stack_details(p) for name in to_plan if (p := plans.get(name))]
    body = "\n".join([*lines, "", *details]).rstrip() + "\n"
    if len(body) > MAX_BODY_CHARACTERS:
        cut = "\n\n*(cut at GitHub's comment size limit: the run's artifacts hold every plan)*\n"
        body = body[: MAX_BODY_CHARACTERS - len(cut)] + cut
    return body


# --- GitHub ----------------------------------------------------------------------------------


class GitHubComments(Protocol):
    """The three calls this tool makes on a pull request's (issue) comments."""

    def list_comments(self, repository: str, number: int) -> Iterator[Mapping[str, Any]]: ...

    def create_comment(self, repository: str, number: int, body: str) -> Mapping[str, Any]: ...

    def update_comment(self, repository: str, comment_id: int, body: str) -> Mapping[str, Any]: ...


class RestClient:
    """GitHub's REST API over urllib: no dependency beyond the standard library."""

    def __init__(self, token: str, api_url: str = DEFAULT_API_URL) -> None:
        self._token = token
        self._api_url = api_url.rstrip("/")

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 (the URL is GitHub's API, https)
            f"{self._api_url}{path}",
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self._token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise CommentError(f"GitHub API {method} {path}: {error.code} {detail}") from None
        except urllib.error.URLError as error:
            raise CommentError(f"GitHub API {method} {path}: {error.reason}") from None

    def list_comments(self, repository: str, number: int) -> Iterator[Mapping[str, Any]]:
        page = 1
        while True:
            comments = self._request(
                "GET",
                f"/repos/{repository}/issues/{number}/comments?per_page={PAGE_SIZE}&page={page}",
            )
            yield from comments
            if len(comments) < PAGE_SIZE:
                return
            page += 1

    def create_comment(self, repository: str, number: int, body: str) -> Mapping[str, Any]:
        return dict(
            self._request("POST", f"/repos/{repository}/issues/{number}/comments", {"body": body})
        )

    def update_comment(self, repository: str, comment_id: int, body: str) -> Mapping[str, Any]:
        return dict(
            self._request(
                "PATCH", f"/repos/{repository}/issues/comments/{comment_id}", {"body": body}
            )
        )


def find_own_comment(comments: Iterator[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The plan comment: the one whose body starts with the marker (a reply quoting the marker
    further down is someone else's comment)."""
    for comment in comments:
        if str(comment.get("body") or "").startswith(MARKER):
            return comment
    return None


def post_or_update(
    client: GitHubComments, repository: str, number: int, body: str
) -> tuple[str, int]:
    """Edit the existing plan comment, or create it; returns ("updated"|"created", its id)."""
    existing = find_own_comment(client.list_comments(repository, number))
    if existing is not None:
        updated = client.update_comment(repository, int(existing["id"]), body)
        return "updated", int(updated.get("id", existing["id"]))
    created = client.create_comment(repository, number, body)
    return "created", int(created["id"])


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.ci_comment", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--plans", type=Path, required=True, help="tools.deploy plan summaries")
    parser.add_argument("--changes", type=Path, required=True, help="synth_digest changed JSON")
    parser.add_argument("--repository", required=True, help="OWNER/NAME")
    parser.add_argument("--pull-request", type=int, required=True)
    parser.add_argument("--commit", default="")
    parser.add_argument("--run-url", default="")
    parser.add_argument("--dry-run", action="store_true", help="print the body, post nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, client: GitHubComments | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        body = build_body(
            read_changes(arguments.changes),
            read_plans(arguments.plans),
            commit=arguments.commit,
            run_url=arguments.run_url,
        )
        if arguments.dry_run:
            print(body)
            return 0
        if client is None:
            token = os.environ.get("GITHUB_TOKEN", "")
            if not token:
                print("error: GITHUB_TOKEN is not set (or use --dry-run)", file=sys.stderr)
                return 2
            client = RestClient(token, os.environ.get("GITHUB_API_URL", DEFAULT_API_URL))
        action, comment_id = post_or_update(
            client, arguments.repository, arguments.pull_request, body
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CommentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{action} comment {comment_id} on {arguments.repository}#{arguments.pull_request}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
