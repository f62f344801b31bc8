"""``python -m kbroker.log.cleaner``: a log cleaner worker process (see :mod:`kbroker.log.cleaner.worker`)."""

import sys

from kbroker.log.cleaner.worker import main

sys.exit(main())
