"""``python -m xapi_sim.testing.soak``: the soak run (see the package docstring)."""

import sys

from .run import main

sys.exit(main())
