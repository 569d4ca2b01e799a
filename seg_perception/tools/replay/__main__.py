"""``python -m seg_perception.tools.replay``."""

import sys

from .cli import main

sys.exit(main())
