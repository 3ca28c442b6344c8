# static: ok
# runtime: ok
# A benign candidate: DPO with renamed variables (control for the corpus runner).
def my_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
            reference_rejected_logps, beta, label_smoothing=0.0):
    a = policy_chosen_logps - reference_chosen_logps
    b = policy_rejected_logps - reference_rejected_logps
    return -F.logsigmoid(beta * (a - b))
