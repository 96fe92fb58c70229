"""THE loss math of collapse-lab (docs/methods.md §1-§5), written once in torch.

Both the numba simulator (checked against these functions to 1e-10) and the LLM trainer call it.
Public contract (docs/README.md): group_advantages, divergence, aggregate, policy_loss, recipe,
Recipe (prepare -> Prepared, loss), RECIPES (RECIPE_INFO: one line each), Batch (select).
Property tests users can run on their own recipes: collapse_lab.objective.testing (needs hypothesis).
"""

from .advantages import (
    ADVANTAGES,
    GROUP_RELATIVE,
    STD_MODES,
    group_advantages,
    log_comb,
    population_advantages,
)
from .batch import SUCCESS_THRESHOLD, Batch, PromptHistory, RefSamples, successes
from .checks import check_bool, check_choice, check_float, check_int
from .components import (
    BBG,
    DPH,
    IPS,
    ISAC,
    STAGES,
    Advantage,
    Entropy,
    KLPenalty,
    Memory,
    PolicySpec,
    ZeroSuccess,
)
from .divergences import (
    DIVERGENCES,
    REFERENCE_SAMPLED,
    categorical_divergence,
    categorical_divergence_grad,
    divergence,
    f_generator,
)
from .groups import group_index, group_mean, group_size, group_sum, group_var, pair_counts
from .memory import memory_loss, sampling_logits, sampling_logp
from .policy import AGG_MODES, LEVELS, Denominators, aggregate, as_tokens, policy_loss
from .prepared import Prepared
from .recipes import DIAGNOSTICS, Recipe
from .registry import RECIPE_INFO, RECIPES, combine, recipe
from .shaping import (
    bbg_utility,
    bbg_weights,
    dynamic_sampling_keep,
    group_success_counts,
    ips_rewards,
    isac_multiplier,
    zero_success_gate,
)

__all__ = [
    "ADVANTAGES", "GROUP_RELATIVE", "STD_MODES", "group_advantages", "log_comb", "population_advantages",
    "Batch", "PromptHistory", "RefSamples", "SUCCESS_THRESHOLD", "successes",
    "Advantage", "PolicySpec", "IPS", "ISAC", "ZeroSuccess", "BBG", "KLPenalty", "DPH", "Entropy",
    "Memory", "STAGES", "check_bool", "check_choice", "check_float", "check_int",
    "DIVERGENCES", "REFERENCE_SAMPLED", "divergence", "f_generator", "categorical_divergence",
    "categorical_divergence_grad",
    "group_index", "group_mean", "group_size", "group_sum", "group_var", "pair_counts",
    "memory_loss", "sampling_logits", "sampling_logp",
    "AGG_MODES", "LEVELS", "Denominators", "aggregate", "as_tokens", "policy_loss", "Prepared",
    "DIAGNOSTICS", "RECIPES", "RECIPE_INFO", "Recipe", "combine", "recipe",
    "bbg_utility", "bbg_weights", "dynamic_sampling_keep", "group_success_counts", "ips_rewards",
    "isac_multiplier", "zero_success_gate",
]
