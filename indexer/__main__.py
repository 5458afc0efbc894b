import sys

from indexer.ops.cli import main

sys.exit(main())
