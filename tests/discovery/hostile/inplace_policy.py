# static: ok
# runtime: mutates_input
# Scales the policy log-probs in place.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    policy_chosen_logps.mul_(beta)
    return -F.logsigmoid(policy_chosen_logps - policy_rejected_logps)
