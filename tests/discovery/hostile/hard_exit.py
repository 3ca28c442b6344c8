# static: unsafe
# runtime: unsafe
# Kills its own worker process outright; the pool must replace it.
# Since the allow-list runtime: `import os` is outside the allow-list. (A child that dies outright is tested with a trusted job: test_sandbox_escapes.)
import os


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    os._exit(3)
