"""The final (or ``--quick``) runs of the benchmark as the report reads them: per (method, template)
and seed, the evaluation at the budget, the base model's, and which runs exist."""

import os

from b2diffurl.toylab import protocol
from b2diffurl.toylab.ledger import final_dir
from b2diffurl.toylab.protocol import METHODS
from b2diffurl.toylab.verdicts import at_budget, base_eval


class Finals:
    """The final (or quick) runs: per (method, template), the evaluation at the budget per seed."""

    def __init__(self, save_path, kind, seeds, rounds):
        self.save_path, self.kind, self.seeds, self.rounds = save_path, kind, seeds, rounds
        self.budget = rounds * protocol.QUERIES_PER_ROUND
        self.dir = lambda label, template, seed: final_dir(save_path, label, template, seed, kind)

    def values(self, label, template, prompt_set, metric):
        """{seed: value} of the runs that reached the budget."""
        out = {}
        for seed in self.seeds:
            result = at_budget(self.dir(label, template, seed), prompt_set, self.budget)
            if result is not None and result["reward_queries"] == self.budget and result.get(metric) is not None:
                out[seed] = result[metric]
        return out

    def base(self, template, prompt_set, metric):
        for label in METHODS:
            for seed in self.seeds:
                result = base_eval(self.dir(label, template, seed), prompt_set)
                if result is not None and result.get(metric) is not None:
                    return result[metric]
        return None

    def has(self, label, template):
        return any(os.path.isdir(self.dir(label, template, seed)) for seed in self.seeds)
