"""The names of the calibrators (:mod:`eeoffload.calibrators`): the one vocabulary of
``calibration.method`` (calibrate, evaluate, trajectory, plots, report, MLflow) and
``calibration.methods`` (certify). Its own import-free module so that the params schema
(pipeline/core/params.py) imports the list from the library without making every stage depend on the
calibrators' code (tests/test_dvc_contract.py: a stage's deps are its import closure).
"""

METHODS = ("none", "temperature", "global_temperature", "vector_scaling", "histogram_binning",
           "isotonic", "scaling_binning")
#: The default of ``calibration.method``: the paper's temperature scaling, one T per exit (IV-A, eq. 2).
DEFAULT_METHOD = "temperature"
#: How the figures' captions and the report name each calibrator.
DESCRIPTIONS = {"none": "none (softmax as is)", "temperature": "temperature scaling, one T per exit (paper IV-A)",
                "global_temperature": "temperature scaling, one T shared by the side branches",
                "vector_scaling": "vector scaling", "histogram_binning": "top-label histogram binning",
                "isotonic": "top-label isotonic regression", "scaling_binning": "scaling-binning"}
