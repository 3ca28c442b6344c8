# static: ok
# runtime: crash
# Unbounded recursion.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    def down(n):
        return down(n + 1) + 1
    down(0)
    return policy_chosen_logps
