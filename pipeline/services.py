"""``python -m pipeline.services start|stop|status|api-env``: ``make ui`` / ``make ui-stop``.

A shim: the services are pipeline.orchestration.services (docs/orchestration.md).
"""

from pipeline.orchestration.services import main

if __name__ == "__main__":
    main()
