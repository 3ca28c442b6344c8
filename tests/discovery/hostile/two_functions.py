# static: contract
# runtime: contract
# Two top-level functions: which one is the loss?
def helper(x):
    return x * 2


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    return -F.logsigmoid(beta * helper(policy_chosen_logps - policy_rejected_logps))
