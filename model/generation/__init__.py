"""Generation: the strategies (``strategies``), their tensor-only search steps (``search``), the one loop
that runs them over the KV cache and records what happened (``loop``, ``records``), and the beam tree,
built beside the search only when asked for (``tree``)."""
from .loop import default_threads, generate, thread_count
from .records import BeamNode, BeamTree, Generation, Hypothesis, PathStep, StepData, StepEvent
from .search import BeamSearch, GreedySearch, next_token_logprobs
from .strategies import Beam, Forced, Greedy, Strategy, check_prefix

__all__ = ["generate", "thread_count", "default_threads", "Greedy", "Beam", "Forced", "Strategy", "check_prefix",
           "Generation", "Hypothesis", "PathStep", "StepData", "StepEvent", "BeamNode", "BeamTree",
           "GreedySearch", "BeamSearch", "next_token_logprobs"]
