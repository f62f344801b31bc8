import sys

from compat.runner import main

sys.exit(main())
