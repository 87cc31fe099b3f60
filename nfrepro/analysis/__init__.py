"""Analysis: what is measured or quoted, never trained here.

``spp`` (signal-propagation statistics, NF-ResNet paper §2), ``complexity`` (parameters and
multiply-adds), ``reference`` (the papers' own numbers, shipped as package data) and ``plotting``
(every figure, drawn from tidy tables). Needs pandas; ``plotting`` needs the ``plots`` extra
(matplotlib, seaborn). Nothing is imported here, so ``import nfrepro.analysis.spp`` stays light.
"""
