"""Environment data (one folder per environment), its schema, loader and composition."""

import os

import modules  # noqa: F401 (sets up Node for jsii before composition loads cdktf)

# Composition loads cdktf (and so jsii/Node 20): silence Node's end-of-life banner first.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
