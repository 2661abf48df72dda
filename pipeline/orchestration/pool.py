"""The Prefect work pool of the sweeps over workers and its one deployment, the sweep point's flow
(pipeline.orchestration.sweep_point). Prefect is imported inside the functions: the constants serve
pipeline.orchestration.scaleout, which stays free of Prefect imports.
"""

from __future__ import annotations

POOL = "eeoffload-sweep"
DEPLOYMENT = "eeoffload"



def ensure_pool(pool: str = POOL) -> None:
    """The work pool ``pool`` of type ``process`` (created with Prefect's default job template)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(
                name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:
            pass


def register_deployment(pool: str = POOL) -> str:
    """Register ``benchmark-sweep-point/eeoffload`` in ``pool``; its full name."""
    from prefect.deployments.runner import EntrypointType

    from pipeline.orchestration.sweep_point import FLOW_NAME, sweep_point_flow

    ensure_pool(pool)
    deployment = sweep_point_flow.to_deployment(
        name=DEPLOYMENT, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
        description="one sweep point in its own workspace: clone, dvc repro --pull, dvc push --run-cache, MLflow")
    deployment.apply()
    return f"{FLOW_NAME}/{DEPLOYMENT}"


def online_workers(pool: str = POOL) -> list[str]:
    """Names of the pool's workers that Prefect sees online (heartbeats)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(pool)
    return [w.name for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]
