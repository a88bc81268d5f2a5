"""Shared building blocks. A layer exists once here; model files import it."""

from msakit.layers.alignment import mmd, sinkhorn_distance
from msakit.layers.attention import CrossModalAttention, safe_key_padding_mask
from msakit.layers.contrastive import info_nce, symmetric_info_nce
from msakit.layers.encoders import PositionalEncoding, SequenceEncoder
from msakit.layers.fusion import masked_softmax
from msakit.layers.gated_fusion import GatedResidualFusion
from msakit.layers.mamba import MambaBlock, MambaLayer, ModalityAwareMamba, selective_scan
from msakit.layers.mlp import MLP
from msakit.layers.moe import MixtureOfExperts, MoEOutput
from msakit.layers.prompts import DisentangledPrompts, PromptedEncoder
from msakit.layers.reliability import ReliabilityEstimator, trust_weights
from msakit.layers.subspace import hsic, l2_alignment, orthogonality
from msakit.layers.tensor_fusion import LowRankFusion, ModalitySubNet
from msakit.layers.time2vec import Time2Vec
from msakit.layers.uncertainty import HeteroscedasticHead, gaussian_nll, predictive_entropy

__all__ = [
    "MLP",
    "CrossModalAttention",
    "DisentangledPrompts",
    "GatedResidualFusion",
    "HeteroscedasticHead",
    "LowRankFusion",
    "MambaBlock",
    "MambaLayer",
    "MixtureOfExperts",
    "MoEOutput",
    "ModalityAwareMamba",
    "ModalitySubNet",
    "PositionalEncoding",
    "PromptedEncoder",
    "ReliabilityEstimator",
    "SequenceEncoder",
    "Time2Vec",
    "gaussian_nll",
    "hsic",
    "info_nce",
    "l2_alignment",
    "masked_softmax",
    "mmd",
    "orthogonality",
    "predictive_entropy",
    "safe_key_padding_mask",
    "selective_scan",
    "sinkhorn_distance",
    "symmetric_info_nce",
    "trust_weights",
]
