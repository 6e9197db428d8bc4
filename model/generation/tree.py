"""The beam tree: every candidate beam search ranked, as nodes, built from ``BeamSearch``'s recorded
candidates after the search (only when a caller asks for the tree: the app's beam view and traces)."""
from __future__ import annotations

from .records import BeamNode, BeamTree
from .search import BeamSearch

STATUS = {1: "kept", 2: "pruned", 3: "finished"}


def beam_trees(search: BeamSearch) -> list[BeamTree]:
    """One ``BeamTree`` per sentence of a finished ``search`` (after ``search.finish``)."""
    k, norm = search.k, search.norm
    nodes: list[list[BeamNode]] = [[] for _ in range(search.batch)]
    row_node = [-1] * (search.batch * k)  # node id of the hypothesis now in each row
    ended: dict[tuple[int, int, int], int] = {}  # (step, sentence, column) -> node id of a finished candidate
    for c in search.candidates:
        scores, lps, rows, toks, status = (x.tolist() for x in (c.scores, c.logprobs, c.rows, c.tokens, c.status))
        new_node = list(row_node)
        for b, sentence in enumerate(nodes):
            slot = 0
            for j, st in enumerate(status[b]):
                if st == 0:
                    continue
                row = rows[b][j]
                node = BeamNode(len(sentence), c.step, row_node[row], row, toks[b][j], lps[b][j], scores[b][j],
                                norm(scores[b][j], c.step + 1), STATUS[st], c.forced)
                sentence.append(node)
                if st == 1 or c.forced:
                    new_node[b * k + slot] = node.id
                    slot += 1
                if st == 3:
                    ended[(c.step, b, j)] = node.id
        row_node = new_node
    trees = []
    for b, (_, step, where, kind) in enumerate(search.winners):
        winner = ended[(step, b, where)] if kind == 1 else row_node[where] if kind == 0 else -1
        trees.append(BeamTree(nodes[b], winner))
    return trees
