"""The plumbing every stage and tool shares: params.yaml's typed schema (params, params_schema,
params_model, params_train), the stage runner and schema-checked readers (io), atomic writes
(atomic), the output paths (registry), the readers of upstream outputs (artifacts, run_inputs,
splits), the CIFAR-10 archive checks (archive), params overlays (overlay), the allocator settings
(runtime) and the interpreter check of `python -m pipeline` (interpreter).
"""
