"""`python -m benchmarks.window [--quick | --smoke]`: see benchmarks/window/__init__.py."""

import sys

from benchmarks.window.main import main

sys.exit(main())
