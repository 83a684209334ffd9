"""Past one process (DESIGN.md §7, docs/distributed.md): sampler actors on Ray, the learner as a
torch.distributed group, both driven by ``rlft.distributed.loop.train`` with the same pure pieces
as the single-process loop. Ray is an optional extra (``pip install 'rlft[ray]'``)."""
