"""Token pieces and step facts as small HTML fragments (escaped: the pieces come from user text).

The classes used here (``rg-chip``, ``rg-stat``...) are styled by the app's stylesheet.
"""
from __future__ import annotations

import html
from typing import Sequence

WORD_START = "▁"  # SentencePiece's marker for "a space precedes this piece"


def piece_html(piece: str) -> str:
    """One piece, escaped, with the word-start marker dimmed so the word itself reads first."""
    text = html.escape(piece)
    if text.startswith(WORD_START):
        return f'<span class="rg-ws">{WORD_START}</span>{text[len(WORD_START):]}'
    return text


def pieces_html(pieces: Sequence[str], label: str, current: int | None = None, done: int | None = None) -> str:
    """A labelled row of chips, one per piece; ``current`` is highlighted, chips after ``done`` are dimmed."""
    chips = []
    for i, piece in enumerate(pieces):
        classes = ["rg-chip"]
        if piece in ("<s>", "</s>", "<pad>", "<unk>"):
            classes.append("rg-special")
        if i == current:
            classes.append("rg-current")
        elif done is not None and i > done:
            classes.append("rg-later")
        title = html.escape(f"#{i}: {piece}", quote=True)
        chips.append(f'<span class="{" ".join(classes)}" title="{title}">{piece_html(piece)}</span>')
    return (
        f'<div class="rg-pieces"><div class="rg-pieces-label">{html.escape(label)} '
        f'<span class="rg-count">{len(pieces)}</span></div><div class="rg-chips">{"".join(chips)}</div></div>'
    )


def stats_html(stats: Sequence[tuple[str, str]]) -> str:
    """A row of (label, value) cards; both are escaped."""
    cards = "".join(
        f'<div class="rg-stat"><div class="rg-stat-label">{html.escape(k)}</div>'
        f'<div class="rg-stat-value">{html.escape(v)}</div></div>'
        for k, v in stats
    )
    return f'<div class="rg-stats">{cards}</div>'
