# static: ok
# runtime: memory
# Tries to allocate 50 GB.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    big = torch.ones(50 * 1024 ** 3 // 4)
    return big[: policy_chosen_logps.shape[0]] * policy_chosen_logps
