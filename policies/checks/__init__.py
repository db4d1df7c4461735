"""Custom checkov checks of the PHI ML platform (CKV_PHI_*), one per file.

checkov loads this directory with `--external-checks-dir policies/checks`: it executes every
`.py` file here (this `__init__.py` must exist, or checkov loads nothing), and each check file
registers its check when executed. Files whose name starts with `_` hold shared code, not
checks. Three kinds of check, all run by `checkov --framework terraform_json`:

- resource checks (`BaseResourceCheck`): one resource's own configuration;
- provider checks (`BaseProviderCheck`): a stack's `provider "aws"` block (region, tags);
- stack checks (`_stack.StackCheck`): properties of a whole stack (which endpoints a VPC has,
  which gateways attach to it, which resources a production stack protects). checkov's YAML
  graph checks cannot say "one endpoint per required service" and, under terraform_json, see no
  provider block, so these are checkov graph checks whose solver is Python (see `_stack.py`).

The check files import `policies.checks._conf` / `_stack`, so checkov must run in the project's
environment (`.venv`, where the project is installed in editable mode).
"""
