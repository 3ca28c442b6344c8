# static: ok
# runtime: non_finite
# log of a negative number: NaN for every example.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    return torch.log(policy_chosen_logps - policy_rejected_logps - 1000.0)
