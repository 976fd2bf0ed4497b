"""Searches: the alpha/beta/gamma compound-scaling grid search, the matched-FLOPs scaling
experiment (V1 section 3, Table 3, Table 7, Fig. 3/8) and the training-aware architecture search
(V2 section 3.3), all trained with `effnet.train`."""

from .compound import SearchConfig, SearchResult, run_search
from .grid import Candidate, GridPoint, MacCounter, candidates, prefilter
from .nas import NasConfig, NasResult, run_nas
from .proxy import Proxy, train_spec
from .reward import Objective, mnas_reward, v2_reward
from .space import SearchSpace, make_space, spec_key

__all__ = ["Candidate", "GridPoint", "MacCounter", "NasConfig", "NasResult", "Objective", "Proxy",
           "SearchConfig", "SearchResult", "SearchSpace", "candidates", "make_space", "mnas_reward",
           "prefilter", "run_nas", "run_search", "spec_key", "train_spec", "v2_reward"]
