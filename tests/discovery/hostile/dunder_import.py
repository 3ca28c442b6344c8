# static: unsafe
# runtime: unsafe
# os.system reached through __import__.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    __import__("os").system("id")
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
