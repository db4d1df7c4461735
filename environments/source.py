"""Which code a synthesis comes from: the repository and commit every registered model version
records (MetadataProperties), read from the environment the synthesis runs in.

    PHI_SOURCE_REPOSITORY=https://github.com/acme/phi-ml PHI_SOURCE_COMMIT=<40 hex> make synth

In GitHub Actions the workflow's own variables are used when those are unset (GITHUB_SHA,
GITHUB_SERVER_URL/GITHUB_REPOSITORY). Elsewhere the revision is `unrecorded`, never guessed
from the working tree (which may hold uncommitted changes): versions registered from such a
synthesis fail RT_PHI_MODEL_VERSION_TRACEABLE, as they should.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import ValidationError

from modules.pipelines import SourceRevision
from requirements.model_lineage import UNRECORDED_REVISION

REPOSITORY_VARIABLE: Final = "PHI_SOURCE_REPOSITORY"
COMMIT_VARIABLE: Final = "PHI_SOURCE_COMMIT"


def source_revision(environ: Mapping[str, str]) -> SourceRevision:
    """The revision named by `environ`; ValueError naming the variable when it is malformed."""
    repository = (
        environ.get(REPOSITORY_VARIABLE) or _github_repository(environ) or UNRECORDED_REVISION
    )
    commit = environ.get(COMMIT_VARIABLE) or environ.get("GITHUB_SHA") or UNRECORDED_REVISION
    try:
        return SourceRevision(repository=repository, commit=commit)
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        variable = COMMIT_VARIABLE if field == "commit" else REPOSITORY_VARIABLE
        value = commit if field == "commit" else repository
        raise ValueError(
            f"{variable}={value!r}: expected "
            + (
                "a full git commit id (40 or 64 lower-case hex)"
                if field == "commit"
                else "a repository URL without spaces, at most 1,024 characters"
            )
        ) from None


def _github_repository(environ: Mapping[str, str]) -> str | None:
    server, repository = environ.get("GITHUB_SERVER_URL"), environ.get("GITHUB_REPOSITORY")
    return f"{server}/{repository}" if server and repository else None
