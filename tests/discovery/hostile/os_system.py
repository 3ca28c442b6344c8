# static: unsafe
# runtime: unsafe
# Shell escape through os.system.
import os


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    os.system("id > /tmp/prefdisco-pwned")
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
