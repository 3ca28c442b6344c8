# static: unsafe
# runtime: unsafe
# os.system reached through torch's own reference to the os module, via getattr.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    getattr(getattr(torch, "os"), "system")("id")
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
