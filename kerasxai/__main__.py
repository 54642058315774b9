"""``python -m kerasxai`` is the ``kerasxai`` command."""

import sys

from kerasxai.cli import main

sys.exit(main())
