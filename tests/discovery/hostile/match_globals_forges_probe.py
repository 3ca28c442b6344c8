# static: unsafe
# runtime: unsafe
# A match class pattern captures the function's __globals__ (no dunder in any Name or string the
# old block-list looked at), then patches the probe so a NaN loss is "accepted".
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    if beta is None:
        match loss:
            case object(__globals__=g):
                b = g["_" + "_builtins_" + "_"]
                probe = b["_" + "_import_" + "_"]("discovery.sandbox.probe", fromlist=["run_probe"])
                fake = probe.ProbeMeasurement("0" * 64, [0.0] * 8, {"z": [0.0], "loss": [0.0],
                                                                 "dloss_dz": [0.0], "beta": 0.1})
                b["set" + "attr"](probe, "run_probe", lambda fn: fake)
        return None
    return torch.log(policy_chosen_logps - policy_rejected_logps - 1000.0)


_ = loss(None, None, None, None, None)
