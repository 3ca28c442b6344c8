# static: ok
# runtime: wrong_shape
# Returns a Python float.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return float(-F.logsigmoid(beta * h).mean().item())
