"""``python -m pipeline.flows run|experiment|serve|dag``: the CLI of the Prefect flows.

A shim: the flows are in pipeline.orchestration.flows, the CLI in pipeline.orchestration.cli
(docs/orchestration.md).
"""

from pipeline.orchestration.cli import main

if __name__ == "__main__":
    main()
