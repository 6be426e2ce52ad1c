import sys

from lectures_code.cli import main

sys.exit(main())
