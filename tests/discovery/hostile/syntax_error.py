# static: syntax
# runtime: syntax
# Broken Python.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta)
    return policy_chosen_logps
