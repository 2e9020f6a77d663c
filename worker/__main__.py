"""`python -m worker` (Procfile `worker`): Dramatiq workers under a restarting supervisor."""

import sys

from worker.supervisor import main

sys.exit(main())
