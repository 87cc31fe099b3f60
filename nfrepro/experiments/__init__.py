"""Experiments: one module per notebook, what it runs and the numbers behind its verdicts.

``sweep_plan`` is the layer the training notebooks share (a scale, a plan of runs, one resumable
run folder each); then ``signal_propagation`` (01: the SPP claims as numbers), ``agc_ablation``,
``agc_analysis``, ``agc_verdicts`` and ``agc_diagnosis`` (02 and 03: NFNets §4.1, Fig. 2a / 2b,
the layer choice and the training length), ``architecture`` (04: Table 2, the F0..F7 sizes),
``speed_accuracy`` (05: Fig. 1, Tables 3 and 6), ``why_no_batchnorm`` and ``batchnorm_cost`` (06),
``gradient_clipping`` (07), ``strong_augmentation`` (08) and ``transfer`` (09). May import any
other part.
"""
