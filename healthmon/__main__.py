"""`python -m healthmon ...`"""

import sys

from healthmon.cli import main

sys.exit(main())
