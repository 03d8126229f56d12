#!/usr/bin/env python3
"""Soak xapi-sim (see xapi_sim/testing/soak/): python scripts/soak.py --seconds 60
[--state-dir DIR] [--clients 30] [--pollers 20] [--seed 1] [--no-chaos] [--keep-logs]."""

import sys

from xapi_sim.testing.soak import main

sys.exit(main())
