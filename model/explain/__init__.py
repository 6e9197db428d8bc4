"""Explanations beyond attention maps, each computed from a finished translation (its source ids and the
ids it generated), with hooks on the real modules or the model's own functions so that every number
shown is what the model computed:

- ``cell``: one attention layer's queries, keys, values and head outputs (the page opens any cell);
- ``attribution``: gradient x input and integrated gradients over source and prefix embeddings, the
  source-vs-prefix share of each step and their agreement with cross-attention;
- ``residual``: the residual stream's norms around every sub-layer and LayerNorm (post-LN vs pre-LN);
- ``arithmetic``: parameters by part, training compute and training memory of this very model.

Each returns a JSON-ready dict (large arrays through ``arrays.encode_f32``); ``ui.explain`` serves them.
"""
