"""Theory side of collapse-lab: sympy derivations and numeric predictions for docs/theory.md.

Each module derives its results symbolically (functions returning sympy expressions, named
`*_expr` or after the result) and exposes fast numpy predictions (lambdified once and cached, or
closed forms; no sympy solve at call time):

  flows       items 1-5, symbolic flows and fixed points (vanilla PG, NPG, IPS, IPS-alpha)
  logratio    items 1-5, numeric log-ratio laws in time, pg_asymptote, partial tie, entropy
  groups      items 6, 7, 10: unsampled outcomes, population weight w_N(P), GRPO log-ratio moments
  ips         item 8: finite-group IPS mean field and rest point
  tails       items 9, 11: tail miss, neutral drift time
  coupling    items 12, 13: kernel coupling across prompts, squeezing
  passk       items 14-16: pass@k variance, BBG utility, posterior pass@k
  divergence  item 17: f-divergence-regularised optima
  shared_answers  item 12 on the semantic-coupling benchmark: linear flow, two-prompt pair law
Advantages are never re-derived: they come from `collapse_lab.objective.group_advantages`.
"""

from .coupling import (
    coupling_kernel,
    coupling_logprob_change,
    coupling_prediction,
    squeeze_logprob_change,
)
from .divergence import fdiv_fixed_point, fdiv_multiplier
from .groups import (
    grpo_weight_limit,
    logratio_mean_limit,
    logratio_moments,
    population_weight,
    population_weight_expr,
    unsampled_logprob_change,
)
from .ips import ips_growth_rates, ips_mean_field, ips_rest_point, ips_survival_threshold
from .logratio import (
    FLOWS,
    entropy_change,
    flow_solve,
    flow_velocity,
    ips_logratio_k2,
    logratio_rate,
    mei_gap_bound,
    npg_logratio,
    partial_tie_exponent,
    pg_asymptote,
    pg_logratio_k2,
)
from .passk import bbg_utility, passk_marginal, passk_plugin_mean, passk_variance, posterior_passk
from .shared_answers import linear_flow_solve, linear_flow_velocity, pair_limit, pair_rate, pair_solve  # noqa: F401
from .tails import neutral_drift_time, tail_miss, tail_miss_peak

__all__ = [
    "coupling_kernel", "coupling_logprob_change", "coupling_prediction", "squeeze_logprob_change",
    "fdiv_fixed_point", "fdiv_multiplier",
    "grpo_weight_limit", "logratio_mean_limit", "logratio_moments", "population_weight",
    "population_weight_expr", "unsampled_logprob_change",
    "ips_growth_rates", "ips_mean_field", "ips_rest_point", "ips_survival_threshold",
    "FLOWS", "entropy_change", "flow_solve", "flow_velocity", "ips_logratio_k2", "logratio_rate",
    "mei_gap_bound", "npg_logratio", "partial_tie_exponent", "pg_asymptote", "pg_logratio_k2",
    "bbg_utility", "passk_marginal", "passk_plugin_mean", "passk_variance", "posterior_passk",
    "neutral_drift_time", "tail_miss", "tail_miss_peak",
]
