"""Figures for Regard's app: pure functions from data (arrays, pieces, traces) to plotly figures.

No gradio here: every figure can be built, tested and reused outside the app.
"""
from .attention import attention_grid, attention_heatmap, cross_matrix, decoder_self_matrix, select_head
from .chips import pieces_html, stats_html
from .latency import LatencyRun, latency_chart
from .memory import kv_cache_chart, weights_chart
from .positional import default_dims, encoding_curves, encoding_heatmap, sentence_encodings, similarity_heatmap
from .probabilities import topk_bar

__all__ = [
    "attention_grid", "attention_heatmap", "cross_matrix", "decoder_self_matrix", "select_head",
    "pieces_html", "stats_html", "LatencyRun", "latency_chart", "kv_cache_chart", "weights_chart",
    "default_dims", "encoding_curves", "encoding_heatmap", "sentence_encodings", "similarity_heatmap", "topk_bar",
]
