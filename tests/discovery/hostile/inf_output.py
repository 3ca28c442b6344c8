# static: ok
# runtime: non_finite
# exp of a large margin overflows to inf in float32.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return torch.exp(-10.0 * h)
