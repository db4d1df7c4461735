"""One construct per layer of the PHI ML platform, plus the shared building blocks."""

import os

# jsii starts Node.js on first use and Node 20 prints an end-of-life banner on every start;
# set before any construct library loads. DESIGN.md: the pinned cdktf runs on Node 20.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
