import sys

from cuecraft.cli import main

sys.exit(main())
