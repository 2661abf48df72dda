"""A trained run's weights logged as an MLflow PyTorch model (the model code beside it), so that
``mlflow.pytorch.load_model`` gives back the early-exit network. MLflow and torch are imported
inside: a tracking pass without models never loads them.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core import registry


def log_pytorch_model(root: Path, uri: str, run_id: str, variant: str, seed: int, branches: list[str]) -> str:
    """Log the weights of run ``variant`` x ``seed`` as an MLflow PyTorch model of run ``run_id``; its URI."""
    import mlflow
    import mlflow.pytorch
    import torch

    import eeoffload
    from eeoffload.layout import ModelSpec
    from eeoffload.model import build_model

    state = torch.load(root / registry.model_path(variant, seed), map_location="cpu", weights_only=True)
    spec = ModelSpec.from_dict(state.get("model") or {})  # absent in older files: today's B-AlexNet
    model = build_model(spec, state.get("branches", branches), load_init_weights=False)
    model.load_state_dict(state["state_dict"])
    model.eval()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id):
            # pickle with the model code beside it (pt2 needs a TensorSpec signature, and forward
            # returns a list of exits); load with mlflow.pytorch.load_model
            info = mlflow.pytorch.log_model(model, name=f"{variant}", serialization_format="pickle",
                                            code_paths=[str(Path(eeoffload.__file__).parent)],
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    finally:
        mlflow.set_tracking_uri(previous)
    return info.model_uri
