# static: unsafe
# runtime: unsafe
# Opens a socket to phone home.
import socket


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("1.1.1.1", 80))
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
