# static: unsafe
# runtime: crash
# Kills its own worker process outright; the pool must replace it.
import os


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    os._exit(3)
