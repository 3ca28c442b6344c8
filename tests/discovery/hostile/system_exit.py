# static: ok
# runtime: crash
# Tries to take the worker down with SystemExit.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    raise SystemExit(3)
