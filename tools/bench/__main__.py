"""``python -m tools.bench``: run the broker benchmark."""

from tools.bench.cli import main

raise SystemExit(main())
