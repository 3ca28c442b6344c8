# static: unsafe
# runtime: unsafe
# os.popen reached as an attribute of torch (torch imports os).
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    torch.os.popen("id").read()
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
