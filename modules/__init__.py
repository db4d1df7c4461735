"""One construct per layer of the PHI ML platform, plus the shared building blocks."""

import os

# jsii starts Node.js on first use and Node 20 prints an end-of-life banner on every start;
# set before any construct library loads. DESIGN.md: the pinned cdktf runs on Node 20.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# The Node side of the lazy provider import (modules/aws.py is the Python side): the provider's
# lib/index.js requires all ~2,100 resource modules when jsii loads the assembly, about 2 s of
# compiling and 400 MB. The preload defers each to its first use; the output is byte-identical
# (tests/test_main.py compares it with PHI_PLAIN_PROVIDER_IMPORT=1, which leaves it out).
_LAZY_PROVIDER_INDEX = os.path.join(os.path.dirname(__file__), "lazy_provider_index.js")
if os.environ.get("PHI_PLAIN_PROVIDER_IMPORT") != "1" and _LAZY_PROVIDER_INDEX not in (
    os.environ.get("NODE_OPTIONS", "")
):
    os.environ["NODE_OPTIONS"] = (
        f'{os.environ.get("NODE_OPTIONS", "")} --require "{_LAZY_PROVIDER_INDEX}"'.strip()
    )
