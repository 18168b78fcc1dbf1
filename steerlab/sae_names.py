"""The names of the SAE architectures, without importing torch.

:mod:`steerlab.sae` implements them; the CLI (whose ``--help`` must not import torch),
the dictionary schema and :class:`~steerlab.sae.SAEConfig` all take their choices from
:data:`ARCHITECTURES`, so a new architecture is added in one place.
"""

from __future__ import annotations

#: every SAE architecture steerlab trains, the default first (references in :mod:`steerlab.sae`)
ARCHITECTURES = ("topk", "relu", "batchtopk", "jumprelu", "matryoshka")

#: the architectures whose sparsity is set by ``k`` active latents per vector (on average for batchtopk)
K_ARCHITECTURES = ("topk", "batchtopk", "matryoshka")
