import sys

from progattr.cli import main

sys.exit(main())
