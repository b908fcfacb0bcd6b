"""hallflow's command line for service halls: `python starter.py <group> <command>`.

    python starter.py case start --file docs/examples/case-enterprise-opening.json
    python starter.py case status HALL1-0001            # -o json for scripts
    python starter.py operator inbox --actor officer-li
    python starter.py --help                            # groups: case, feedback, risk, operator, admin

The commands live in cli/. Exit codes: 0 done, 1 refused by hallflow, 2 bad input, 3 Temporal unreachable.
"""

import os
import sys

from cli.app import main

if __name__ == "__main__":
    code = main()
    # temporalio's Rust runtime threads can abort a short-lived client at interpreter teardown
    # (sdk-python issue #300: "PyGILState_Release ... finalizing"); all output is written, so skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
