import sys

from llmnotes.cli import main

sys.exit(main())
