"""``python -m tools.fuzz``: fuzz the codec in-process or a live broker."""

from tools.fuzz.cli import main

raise SystemExit(main())
