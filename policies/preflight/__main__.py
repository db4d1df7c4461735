import sys

from policies.preflight.run import main

sys.exit(main())
