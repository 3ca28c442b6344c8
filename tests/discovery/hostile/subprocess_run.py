# static: unsafe
# runtime: unsafe
# Shell escape through subprocess.
import subprocess


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    subprocess.run(["sh", "-c", "id"], check=False)
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
