# static: unsafe
# runtime: unsafe
# Patches torch for every later candidate served by the same worker (the worker must be replaced).
# Since the allow-list runtime: the torch facade is read-only. (A child that really patches torch is tested with a trusted job: test_sandbox_escapes.)
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    torch.sigmoid = lambda x: x * 0
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
