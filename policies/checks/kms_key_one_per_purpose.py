"""CKV_PHI_17 "Ensure every KMS key serves exactly one purpose, named by its tag and its alias".

One customer-managed key per purpose (PHI data, logs, ML artifacts, feature store, ...) means
that revoking, disabling or auditing access to one kind of data never touches another, and that
a key policy lists only the readers of that kind of data: HIPAA 45 CFR 164.312(a)(1) (access
control) and (a)(2)(iv) (encryption), 164.308(a)(4) (information access management, minimum
necessary), GDPR Art. 25 and 32. A key shared by two purposes widens each purpose's readers to
the other's.

Judged, with the stack in view: every `aws_kms_key`. It passes when
- its `tags` hold a non-empty `key-purpose`,
- no other `aws_kms_key` of the stack has the same `key-purpose`, and
- exactly one `aws_kms_alias` of the stack targets it (`target_key_id` interpolating the key's
  `key_id`, `arn` or `id`), and that alias's last path segment ends with the purpose
  (`alias/phi-ml/dev/phi-data`, `alias/phi-ml/terraform-state-access-logs` for `logs`).
A second alias on a key is a second purpose (two keys folded into one); a key without an alias
has no purpose anyone can name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    register,
)

PURPOSE_TAG = "key-purpose"


def purpose_of(conf: dict[str, Any]) -> str:
    tags = conf.get("tags")
    value = tags.get(PURPOSE_TAG) if isinstance(tags, dict) else None
    return value.strip() if isinstance(value, str) else ""


def names_purpose(alias: Any, purpose: str) -> bool:
    return isinstance(alias, str) and alias.rsplit("/", 1)[-1].endswith(purpose)


class KmsKeyOnePerPurpose(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure every KMS key serves exactly one purpose, named by its tag and its alias",
            id="CKV_PHI_17",
            category=CheckCategories.ENCRYPTION,
            judged_types=["aws_kms_key"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        keys = stack.resources("aws_kms_key")
        purposes = {name: purpose_of(conf) for name, conf in keys.items()}
        counts = Counter(p for p in purposes.values() if p)
        aliases_of: dict[str, list[str]] = {name: [] for name in keys}
        for alias in stack.resources("aws_kms_alias").values():
            for key in referenced_names(alias.get("target_key_id"), "aws_kms_key") & set(keys):
                aliases_of[key].append(str(alias.get("name")))
        for name in sorted(keys):
            purpose, aliases = purposes[name], sorted(aliases_of[name])
            problems = []
            if not purpose:
                problems.append(f"no {PURPOSE_TAG} tag")
            elif counts[purpose] > 1:
                problems.append(f"{counts[purpose]} keys of the stack serve {purpose}")
            if len(aliases) != 1:
                problems.append(f"{len(aliases)} aliases ({', '.join(aliases) or 'none'})")
            elif purpose and not names_purpose(aliases[0], purpose):
                problems.append(f"alias {aliases[0]} does not name its purpose {purpose}")
            yield Verdict(address("aws_kms_key", name), not problems, "; ".join(problems))


check = register(KmsKeyOnePerPurpose())
