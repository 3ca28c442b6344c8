# static: ok
# runtime: mutates_input
# Normalises the reference log-probs in place (they carry no gradient, so autograd cannot see it).
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    reference_chosen_logps -= reference_chosen_logps.mean()
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
