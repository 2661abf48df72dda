"""Orchestration over the DVC pipeline: Prefect flows, the workspace lock, sweeps, the UI services.

Modules (each importable on its own; only ``flows``, ``sweep`` and ``cli`` import Prefect):

* ``project``: the project root, the environment of DVC subprocesses, the MLflow store ``make ui``
  serves (one tracking URI for flows, smoke runs and the UI), where debug logs go.
* ``dag``: the stage graph, read from DVC (``dvc.repo.Repo(...).index.graph``).
* ``lock``: the workspace lock (``filelock``), one flow per workspace.
* ``flows``: the Prefect tasks and flows ``benchmark`` and ``benchmark-experiment``.
* ``settings``, ``dvc_commands``: an experiment's settings as checked ``-S`` overrides; DVC commands
  with their output streamed to a logger (no Prefect: shared by the flows, sweeps and sweep points).
* ``cli``: ``python -m pipeline flows run|experiment|serve|dag``; one-line errors, tracebacks to a log file.
* ``sweep``: the flow ``benchmark-sweep`` and its CLI (``python -m pipeline sweep``).
* ``services``: ``make ui`` / ``make ui-stop``: the Prefect server and the MLflow UI on 127.0.0.1.
* ``tracking``, ``tracking_tables``, ``tracking_views``: MLflow logging of a finished pipeline run,
  what it logs, and the experiment's kind and saved views.
* ``tracking_model``: a trained run logged as an MLflow PyTorch model.
* ``workpool``, ``pool``, ``sweep_point``, ``scaleout``: sweeps over Prefect work-pool workers on any number of
  machines, sharing a DVC remote and an MLflow tracking server (docs/scale-out.md).
* ``cluster``, ``cluster_hosts``, ``cluster_services``: that set-up on one machine with its hosts
  apart (network namespaces, PostgreSQL, sshd as the DVC remote); ``cluster_checkpoints``: epoch
  checkpoints in the remote; ``sweep_cancel``: cancelling a sweep (docs/scale-out.md).

The command lines are ``python -m pipeline flows|sweep|workpool|scaleout|cluster|services|tracking ...``
(pipeline/cli.py hands the rest of the line to the module's ``main(argv)``). docs/orchestration.md
describes the whole.
"""
