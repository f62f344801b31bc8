"""``python -m tools.chaos``: random broker faults under an acks=all producer; non-zero on loss."""

from tools.chaos.run import main

raise SystemExit(main())
