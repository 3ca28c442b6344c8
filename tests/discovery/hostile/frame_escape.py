# static: unsafe
# runtime: unsafe
# Reaches module globals through a generator frame, then os via torch.
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    g = (x for x in [1])
    t = g.gi_frame.f_globals["torch"]
    t.os.system("id")
    return policy_chosen_logps
