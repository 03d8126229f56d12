#!/usr/bin/env python3
"""Benchmarks of xapi-sim (see xapi_sim/bench.py): python scripts/bench.py [--quick]."""

import sys

from xapi_sim.bench import main

sys.exit(main())
