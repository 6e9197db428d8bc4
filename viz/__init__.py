"""Regard's figures and the trace's JSON form: pure functions from data to plotly figures or JSON.

- ``trace_json``: the trace contract the API and the page read (``regard-trace/1``) and its checker;
- ``whatif_json``: the What if answers' arrays in the same compact form;
- ``curves``: training curves (dev BLEU and loss over time) and the score rows of the model cards;
- ``positional``: the sinusoidal encodings' heatmap, curves and similarity.

The explorer's maps are drawn in the browser (``ui/static/regard.js``). No gradio here.
"""
