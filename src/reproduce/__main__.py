"""``python -m src.reproduce``: see ``src.reproduce``."""

import sys

from src.reproduce import main

sys.exit(main())
