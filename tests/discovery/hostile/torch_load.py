# static: unsafe
# runtime: unsafe
# Unpickling an arbitrary path with torch.load (code execution via pickle in general).
# Since the allow-list runtime: torch.load is not on the torch facade.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    torch.load("/etc/hostname", weights_only=False)
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
