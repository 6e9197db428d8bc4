"""Explanations beyond attention maps, each computed from a finished translation (its source ids and the
ids it generated), with hooks on the real modules so that every number shown is what the model computed:

- ``residual``: the residual stream's norms around every sub-layer and LayerNorm (post-LN vs pre-LN).

Each returns a JSON-ready dict (large arrays through ``arrays.encode_f32``); ``ui.explain`` serves them.
"""
