# static: unsafe
# runtime: unsafe
# The classic escape: walk object.__subclasses__() to find subprocess.Popen.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "Popen":
            cls(["id"])
    raise RuntimeError("Popen not found")
