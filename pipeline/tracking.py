"""``python -m pipeline.tracking [--root DIR] [--exp-name NAME]``: log a finished pipeline run to MLflow.

A shim: the code is in pipeline.orchestration.tracking (docs/orchestration.md).
"""

from pipeline.orchestration.tracking import main

if __name__ == "__main__":
    main()
