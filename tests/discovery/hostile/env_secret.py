# static: unsafe
# runtime: unsafe
# Looks for API keys in the environment; it must find none (the worker environment is stripped).
# Since the allow-list runtime: `import os` is outside the allow-list. (The stripped environment itself is checked by a trusted job: test_worker_sees_no_secrets_and_no_privileges.)
import os


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    leaked = [k for k in os.environ if k.endswith(("_KEY", "_TOKEN", "SECRET")) or "OPENAI" in k]
    if leaked:
        raise RuntimeError("LEAKED " + ",".join(leaked))
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
