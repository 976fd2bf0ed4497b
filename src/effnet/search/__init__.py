"""Searches: the alpha/beta/gamma compound-scaling grid search and the matched-FLOPs scaling
experiment (V1 section 3, Table 3, Table 7, Fig. 3/8), trained with `effnet.train`."""

from .compound import SearchConfig, SearchResult, run_search
from .grid import Candidate, GridPoint, MacCounter, candidates, prefilter
from .proxy import Proxy, train_spec

__all__ = ["Candidate", "GridPoint", "MacCounter", "Proxy", "SearchConfig", "SearchResult",
           "candidates", "prefilter", "run_search", "train_spec"]
