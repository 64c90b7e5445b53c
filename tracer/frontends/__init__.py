"""Front ends: a model written elsewhere, turned into tracer's ops on the tape.

    pytorch    an nn.Module, its data, loss and optimizer (torch.fx capture): `tracer run torch`

A front end imports core (the ops and the tape) and errors, and the foreign library it reads, only
when it is used: the rest of tracer never imports it.
"""
