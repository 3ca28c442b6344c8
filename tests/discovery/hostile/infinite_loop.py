# static: ok
# runtime: timeout
# A loss that never returns.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    while True:
        pass
