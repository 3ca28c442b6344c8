# static: ok
# runtime: ok
# Floods stdout with 100 MB; the output is captured and truncated, the loss itself is fine.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    chunk = "x" * (1024 * 1024)
    for _ in range(100):
        print(chunk)
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
