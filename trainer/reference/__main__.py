"""`python -m gpulens.trainer.reference --job-id ID --team TEAM --steps N ...`"""

from __future__ import annotations

import logging
import sys

from gpulens.trainer.reference.cli import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
