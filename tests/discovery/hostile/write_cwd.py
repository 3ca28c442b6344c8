# static: unsafe
# runtime: unsafe
# Writes a scratch file into its own working directory: allowed, private, deleted afterwards.
# Since the allow-list runtime: `open` is not a builtin loss code gets. (Writing the private scratch dir is tested with a trusted job: test_sandbox_escapes.)
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    with open("scratch.txt", "w") as fh:
        fh.write("fine")
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
