"""The stage graph, read from DVC: no second, hand-written DAG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def stage_graph(root: Path) -> list[tuple[str, list[str]]]:
    """[(stage, [upstream stages])] in a topological order of DVC's own graph (dvc.yaml order on
    ties); stage names as ``dvc repro`` takes them in ``root`` (``train@one_branch``, ...). The
    ``.dvc`` files of ``dvc add``ed inputs (build/paper's bundle files) are no stages to run: left out."""
    import networkx as nx
    from dvc.repo import Repo

    root = Path(root)
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges: stage -> the stages it depends on
        position = {stage: i for i, stage in enumerate(repo.index.stages)}
        order = list(nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: position.get(s, 0)))

        def address(stage: Any) -> str:  # as `dvc repro` takes it in root (Stage.addressing is cwd-relative)
            if Path(stage.path).resolve() == (root / "dvc.yaml").resolve():
                return stage.name
            return f"{os.path.relpath(stage.path, root)}:{stage.name}" if stage.name else os.path.relpath(stage.path, root)

        def runs(stage: Any) -> bool:  # a dvc.yaml stage; a `dvc add`ed input's .dvc file is data, not a step
            return getattr(stage, "name", None) is not None

        return [(address(s), sorted(address(d) for d in graph.successors(s) if runs(d))) for s in order if runs(s)]


def stage_names(root: Path) -> list[str]:
    """The stage instances of ``root`` in the order the flow runs them."""
    return [stage for stage, _ in stage_graph(root)]
