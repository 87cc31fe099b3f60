"""Experiments: one module per notebook, what it runs and the numbers behind its verdicts.

``signal_propagation`` (01: the SPP claims as numbers), ``agc_ablation`` and ``agc_analysis``
(02 and 03: NFNets §4.1, Fig. 2a / 2b and the layer choice), ``architecture`` (04: Table 2, the
F0..F7 sizes) and ``speed_accuracy`` (05: Fig. 1, Tables 3 and 6). May import any other part.
"""
