# static: unsafe
# runtime: unsafe
# Tries to fill the disk from its private directory (a size-capped tmpfs stops it quickly).
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    block = b"x" * (16 * 1024 * 1024)
    for i in range(10_000):
        with open(f"fill-{i}.bin", "wb") as fh:
            fh.write(block)
    return policy_chosen_logps
