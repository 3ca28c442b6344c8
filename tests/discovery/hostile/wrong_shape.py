# static: ok
# runtime: wrong_shape
# Takes the mean itself: returns a scalar instead of per-example losses.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h).mean()
