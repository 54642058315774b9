import sys

from kerasxai.train.cli import main

sys.exit(main())
