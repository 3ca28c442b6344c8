# static: unsafe
# runtime: ok
# Attribute access hidden inside a format string.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    text = "{0.__class__}".format(policy_chosen_logps)
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h) + 0.0 * len(text)
