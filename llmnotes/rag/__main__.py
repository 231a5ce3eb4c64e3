"""``python -m llmnotes.rag build-index DOCS_DIR [OUT]``, as CI has always run it: the ``llmnotes``
command's ``build-index`` (and ``ask``) under the package's own name."""

import sys

from llmnotes.cli import main

sys.exit(main(sys.argv[1:]))
