"""Training pipeline for Regard's French->English Transformer (see train.py and evaluate.py)."""
