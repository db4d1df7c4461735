"""Workload code: what runs inside SageMaker jobs (and, locally, in-process in tests).

Nothing here imports the constructs (`modules/`), the environments or the tools: the package
is copied into the processing image on its own and needs only its own dependencies (pyarrow,
orjson, boto3).
"""
