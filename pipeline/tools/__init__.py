"""The tools around the pipeline, each `python -m pipeline <tool> ...` (pipeline/cli.py): the results
bundle (paper, paper_import), the runner without DVC (plain_run), scratch projects (scratch), the
cost estimate (estimate), the recipes (recipes), overlays as `-S` arguments (overlay_args), a params
file check (check_params), a run's markdown summary (summary) and the offline DVC plots template
(vega_template).
"""
