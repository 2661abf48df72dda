"""``python -m pipeline.sweep --uplink 5 10 18.8 --branches relu1 relu2``: the sweep flow's CLI.

A shim: the sweep is pipeline.orchestration.sweep (docs/orchestration.md).
"""

from pipeline.orchestration.sweep import main

if __name__ == "__main__":
    main()
