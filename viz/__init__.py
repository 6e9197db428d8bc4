"""Regard's server-side figures and the What if answers' JSON: pure functions from data to plotly or JSON.

- ``whatif_json``: the What if answers' arrays in the trace's compact form (``model.trace_json``);
- ``curves``: training curves (dev BLEU and loss over time) and the score rows of the model cards;
- ``positional``: the sinusoidal encodings' heatmap, curves and similarity.

The explorer's maps are drawn in the browser (``ui/static/regard.js``). No gradio here.
"""
