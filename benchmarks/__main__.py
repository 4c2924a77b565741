"""``python -m benchmarks NAME [--json-out FILE]``: run one scenario, print one JSON object."""

import sys

from benchmarks import main

sys.exit(main())
