import sys

from trashlib.cli import main

sys.exit(main())
