import os

# Before any test module imports cdktf (and so starts Node 20 through jsii).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
