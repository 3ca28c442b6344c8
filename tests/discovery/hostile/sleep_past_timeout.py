# static: unsafe
# runtime: unsafe
# Sleeps far past the wall-clock limit (no CPU used, so only the wall clock can catch it).
# Since the allow-list runtime: `import time` is outside the allow-list. (A child that sleeps past the deadline is tested with a trusted job: test_sandbox_escapes.)
import time


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    time.sleep(3600)
    return policy_chosen_logps
