"""tools.ci_comment: the pull request's one plan comment, built from the plan summaries and
found again by its marker so that every push edits it instead of adding another.

The REST client is exercised against a small fake of GitHub's comment API on loopback, so
pagination, methods, paths and headers are the real HTTP ones."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tools import ci_comment
from tools.ci_comment import (
    MARKER,
    MAX_BODY_CHARACTERS,
    InputError,
    RestClient,
    StackPlan,
    build_body,
    post_or_update,
    read_plans,
)

REPOSITORY = "acme/phi-ml-platform"


def plan(stack: str, outcome: str = "planned", **fields: Any) -> StackPlan:
    values: dict[str, Any] = {
        "environment": stack.split("-", maxsplit=1)[0],
        "add": 1,
        "change": 0,
        "destroy": 0,
        "resource_changes": ((f"aws_s3_bucket.{stack}", ("create",)),),
        "note": "",
        "problem": "",
    }
    values.update(fields)
    return StackPlan(stack=stack, outcome=outcome, **values)


class FakeComments:
    """GitHub's issue comments of one pull request, in memory."""

    def __init__(self, comments: list[dict[str, Any]] | None = None) -> None:
        self.comments = comments or []
        self.calls: list[str] = []

    def list_comments(self, repository: str, number: int) -> Iterator[Mapping[str, Any]]:
        self.calls.append("list")
        yield from self.comments

    def create_comment(self, repository: str, number: int, body: str) -> Mapping[str, Any]:
        self.calls.append("create")
        comment = {"id": 1000 + len(self.comments), "body": body}
        self.comments.append(comment)
        return comment

    def update_comment(self, repository: str, comment_id: int, body: str) -> Mapping[str, Any]:
        self.calls.append(f"update {comment_id}")
        (comment,) = [c for c in self.comments if c["id"] == comment_id]
        comment["body"] = body
        return comment


# --- the body ------------------------------------------------------------------------------


def test_body_starts_with_the_marker_and_tabulates_each_changed_stack() -> None:
    changes = {"added": ["dev-fhir"], "changed": ["dev-ml"], "removed": []}
    plans = {
        "dev-ml": plan("dev-ml", add=2, change=1, destroy=1),
        "dev-fhir": plan("dev-fhir"),
    }
    body = build_body(changes, plans, commit="0123456789abcdef", run_url="https://run/1")
    assert body.startswith(MARKER)
    assert "| `dev-ml` | dev | changed | planned | 2 | 1 | 1 |" in body
    assert "| `dev-fhir` | dev | new | planned | 1 | 0 | 0 |" in body
    assert "commit `0123456789ab`" in body
    assert "[run](https://run/1)" in body
    assert "+ aws_s3_bucket.dev-ml" in body


def test_a_stack_without_a_plan_is_shown_as_failed_not_left_out() -> None:
    body = build_body({"added": [], "changed": ["dev-ml", "dev-data"], "removed": []}, {})
    assert "| `dev-ml` | | changed | no plan (its job failed: see the run) |" in body
    assert "| `dev-data` |" in body


def test_failed_plan_shows_terraform_error() -> None:
    failed = plan("prod-ml", "FAILED", add=None, change=None, destroy=None, resource_changes=())
    failed = StackPlan(**{**failed.__dict__, "problem": "terraform plan:\nError: AccessDenied"})
    body = build_body({"added": [], "changed": ["prod-ml"], "removed": []}, {"prod-ml": failed})
    assert "| `prod-ml` | prod | changed | FAILED |  |  |  |" in body
    assert "Error: AccessDenied" in body


def test_removed_stacks_are_named_with_what_to_do() -> None:
    body = build_body({"added": [], "changed": [], "removed": ["dev-old"]}, {})
    assert "`dev-old`" in body
    assert "terraform plan -destroy" in body


def test_no_change_says_so() -> None:
    body = build_body({"added": [], "changed": [], "removed": []}, {})
    assert "nothing to plan" in body
    assert "|" not in body


def test_replacements_are_marked_as_such() -> None:
    replaced = plan("dev-ml", resource_changes=(("aws_sagemaker_model.m", ("delete", "create")),))
    body = build_body({"added": [], "changed": ["dev-ml"], "removed": []}, {"dev-ml": replaced})
    assert "-/+ aws_sagemaker_model.m" in body


def test_body_stays_under_githubs_limit() -> None:
    many = tuple((f"aws_iam_role.role_{i:05d}_{'x' * 200}", ("create",)) for i in range(100))
    plans = {f"dev-s{i}": plan(f"dev-s{i}", resource_changes=many) for i in range(60)}
    body = build_body({"added": [], "changed": sorted(plans), "removed": []}, plans)
    assert len(body) <= MAX_BODY_CHARACTERS
    assert body.startswith(MARKER)
    assert "comment size limit" in body
    assert "... and 50 more" in body


# --- reading the inputs --------------------------------------------------------------------


def test_reads_the_summaries_tools_deploy_writes(tmp_path: Path) -> None:
    (tmp_path / "dev-ml.json").write_text(
        json.dumps(
            {
                "stack": "dev-ml",
                "environment": "dev",
                "outcome": "planned",
                "add": 1,
                "change": 0,
                "destroy": 0,
                "resource_changes": [{"address": "aws_x.y", "actions": ["create"]}],
                "note": "",
                "problem": "",
            }
        )
    )
    (tmp_path / "dev-ml.plan.txt").write_text("not a summary, not read")
    assert read_plans(tmp_path)["dev-ml"].resource_changes == (("aws_x.y", ("create",)),)
    assert read_plans(tmp_path / "absent") == {}


def test_a_malformed_summary_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "dev-ml.json").write_text('{"environment": "dev"}')
    with pytest.raises(InputError, match=r"dev-ml.json: not a plan summary"):
        read_plans(tmp_path)


# --- find or update ------------------------------------------------------------------------


def test_first_push_creates_the_comment() -> None:
    client = FakeComments([{"id": 1, "body": "LGTM"}])
    assert post_or_update(client, REPOSITORY, 7, f"{MARKER}\nplan") == ("created", 1001)
    assert client.calls == ["list", "create"]


def test_later_pushes_update_the_same_comment() -> None:
    client = FakeComments([{"id": 1, "body": "LGTM"}])
    post_or_update(client, REPOSITORY, 7, f"{MARKER}\nfirst")
    assert post_or_update(client, REPOSITORY, 7, f"{MARKER}\nsecond") == ("updated", 1001)
    assert [c["body"] for c in client.comments] == ["LGTM", f"{MARKER}\nsecond"]
    assert "create" not in client.calls[2:]


def test_a_comment_quoting_the_marker_is_not_ours() -> None:
    quoted: dict[str, Any] = {"id": 5, "body": f"> {MARKER}\n> why does dev-ml change?"}
    client = FakeComments([quoted])
    assert post_or_update(client, REPOSITORY, 7, f"{MARKER}\nplan")[0] == "created"
    assert str(quoted["body"]).startswith("> ")


def test_main_with_a_client_posts_and_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"added": [], "changed": [], "removed": []}))
    client = FakeComments()
    arguments = ["--plans", str(tmp_path / "plans"), "--changes", str(changes)]
    arguments += ["--repository", REPOSITORY, "--pull-request", "7"]
    assert ci_comment.main(arguments, client=client) == 0
    assert ci_comment.main(arguments, client=client) == 0
    assert len(client.comments) == 1
    assert capsys.readouterr().out.splitlines()[-1] == f"updated comment 1000 on {REPOSITORY}#7"


def test_main_reports_a_bad_changes_file_as_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes = tmp_path / "changes.json"
    changes.write_text('{"added": []}')
    arguments = [
        "--plans",
        str(tmp_path / "plans"),
        "--changes",
        str(changes),
        "--repository",
        "a/b",
    ]
    assert ci_comment.main([*arguments, "--pull-request", "1"], client=FakeComments()) == 2
    assert "changes.json: not a `synth_digest changed` record" in capsys.readouterr().err


def test_main_without_token_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"added": [], "changed": [], "removed": []}))
    arguments = [
        "--plans",
        str(tmp_path / "plans"),
        "--changes",
        str(changes),
        "--repository",
        "a/b",
    ]
    assert ci_comment.main([*arguments, "--pull-request", "1"]) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err


# --- the REST client against a fake API on loopback ----------------------------------------


class FakeGitHub(BaseHTTPRequestHandler):
    comments: ClassVar[list[dict[str, Any]]] = []
    requests: ClassVar[list[tuple[str, str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        self.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        length = int(self.headers.get("Content-Length") or 0)
        return dict(json.loads(self.rfile.read(length))) if length else {}

    def do_GET(self) -> None:
        self._record()
        path, _, query = self.path.partition("?")
        parameters = dict(p.split("=") for p in query.split("&"))
        size, page = int(parameters["per_page"]), int(parameters["page"])
        if path != f"/repos/{REPOSITORY}/issues/7/comments":
            self._reply(404, {"message": "Not Found"})
            return
        self._reply(200, self.comments[(page - 1) * size : page * size])

    def do_POST(self) -> None:
        body = self._record()["body"]
        comment = {"id": 90_000 + len(self.comments), "body": body}
        self.comments.append(comment)
        self._reply(201, comment)

    def do_PATCH(self) -> None:
        body = self._record()["body"]
        comment_id = int(self.path.rsplit("/", 1)[1])
        for comment in self.comments:
            if comment["id"] == comment_id:
                comment["body"] = body
                self._reply(200, comment)
                return
        self._reply(404, {"message": "Not Found"})


@pytest.fixture
def fake_github() -> Iterator[str]:
    FakeGitHub.comments = [{"id": i, "body": f"review {i}"} for i in range(1, 231)]
    FakeGitHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_rest_client_pages_through_comments_and_updates_ours(fake_github: str) -> None:
    # Our comment sits on the third page: every page must be read to find it.
    FakeGitHub.comments[215]["body"] = f"{MARKER}\nold plan"
    client = RestClient("secret-token", fake_github)
    assert post_or_update(client, REPOSITORY, 7, f"{MARKER}\nnew plan") == ("updated", 216)
    assert FakeGitHub.comments[215]["body"] == f"{MARKER}\nnew plan"
    methods = [(method, path.split("?")[0]) for method, path, _ in FakeGitHub.requests]
    assert methods == [
        *[("GET", f"/repos/{REPOSITORY}/issues/7/comments")] * 3,
        ("PATCH", f"/repos/{REPOSITORY}/issues/comments/216"),
    ]
    assert {auth for _, _, auth in FakeGitHub.requests} == {"Bearer secret-token"}


def test_rest_client_creates_when_no_page_has_ours(fake_github: str) -> None:
    client = RestClient("secret-token", fake_github)
    assert post_or_update(client, REPOSITORY, 7, f"{MARKER}\nplan") == ("created", 90230)
    assert FakeGitHub.requests[-1][:2] == ("POST", f"/repos/{REPOSITORY}/issues/7/comments")


def test_rest_client_reports_a_refusal(fake_github: str) -> None:
    client = RestClient("secret-token", fake_github)
    with pytest.raises(ci_comment.CommentError, match=r"GET /repos/acme/other/issues/7.*404"):
        list(client.list_comments("acme/other", 7))
