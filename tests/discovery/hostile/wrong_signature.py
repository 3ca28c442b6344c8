# static: contract
# runtime: contract
# Arguments in the wrong order and a missing one.
def loss(chosen, rejected, beta):
    return -F.logsigmoid(beta * (chosen - rejected))
