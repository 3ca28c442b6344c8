# static: unsafe
# runtime: timeout
# Sleeps far past the wall-clock limit (no CPU used, so only the wall clock can catch it).
import time


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    time.sleep(3600)
    return policy_chosen_logps
