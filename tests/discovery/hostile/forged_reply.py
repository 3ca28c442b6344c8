# static: unsafe
# runtime: unsafe
# Writes a fake "accepted" verdict on every pipe fd it can find, hoping the parent reads it.
import json
import os
import struct


def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    fake = json.dumps({"ok": True, "failure_class": None, "message": "accepted",
                       "fingerprint": "0" * 64, "id": -1}).encode()
    for fd in range(3, 64):
        try:
            os.write(fd, struct.pack(">I", len(fake)) + fake)
        except OSError:
            pass
    raise RuntimeError("and now fail for real")
