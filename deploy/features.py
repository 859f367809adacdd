"""Feature names: what each vocabulary id is called inside OpenSearch, and local vectors in that form.

ML Commons names an output id by decoding it alone (skip special tokens), so SentencePiece pieces "▁word" and
"word" share a name, and `rank_features` / `sparse_vector` reject names with '.'. The encoder's output space is
already the served one (training.vocab.served_ids: an unnameable id and every id whose name a lower id has are
exactly 0 in every output, locally, in TorchScript and in ONNX), so naming the active ids is all that is left:
the exported model, the ingest pipeline, `query_text` + `model_id`, and vectors computed here for bulk indexing
or `query_tokens` are the same features. `sparse_vector` (seismic) fields take token ids as keys instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# The ingest pipeline's pruning, shared with eval so locally indexed vectors match ingested ones.
from training.pruning import PRUNE_TYPES, prune_dict as prune_features, prune_matrix, validate_prune  # noqa: F401

FIELD_TYPES = ("rank_features", "sparse_vector")
# Lucene's FeatureField takes only positive normal floats.
MIN_FEATURE_VALUE = float(np.finfo(np.float32).tiny)


@dataclass
class FeatureVocabulary:
    """Per-id OpenSearch names of an encoder's output space and which ids it serves."""

    names: list[str]
    served: np.ndarray  # bool [vocab]

    @classmethod
    def from_encoder(cls, encoder) -> "FeatureVocabulary":
        return cls(list(encoder.feature_names), encoder.output_mask.detach().cpu().numpy() > 0)

    def to_features(self, matrix: sp.csr_matrix, field_type: str = "rank_features",
                    prune_type: str = "none", prune_ratio: float = 0.0) -> list[dict[str, float]]:
        """One {feature: weight} dict per row, named for `field_type` and pruned as the ingest pipeline would."""
        if field_type not in FIELD_TYPES:
            raise ValueError(f"field_type must be one of {FIELD_TYPES}, got {field_type!r}")
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.data[matrix.data < MIN_FEATURE_VALUE] = 0
        matrix.eliminate_zeros()
        stray = np.flatnonzero(~self.served[matrix.indices])
        if len(stray):
            raise ValueError(f"id {matrix.indices[stray[0]]} is active but not a served feature: vectors must come "
                             "from the encoder these names belong to")
        matrix = prune_matrix(matrix, prune_type, prune_ratio)
        out = []
        for i in range(matrix.shape[0]):
            cols = matrix.indices[matrix.indptr[i]:matrix.indptr[i + 1]]
            vals = matrix.data[matrix.indptr[i]:matrix.indptr[i + 1]]
            keys = [str(int(c)) for c in cols] if field_type == "sparse_vector" else [self.names[c] for c in cols]
            out.append(dict(zip(keys, map(float, vals))))
        return out


def parse_prune(value: str) -> tuple[str, float]:
    """'max_ratio:0.1' -> ('max_ratio', 0.1); 'none' -> ('none', 0.0). The CLI form of a prune setting."""
    kind, _, ratio = value.partition(":")
    prune = (kind, float(ratio or 0.0))
    validate_prune(*prune)
    return prune


def encode_features(encoder, texts, is_query: bool = False, field_type: str = "rank_features",
                    prune_type: str = "none", prune_ratio: float = 0.0, batch_size: int = 32,
                    features: FeatureVocabulary | None = None) -> list[dict[str, float]]:
    """Encode texts locally into what OpenSearch stores (documents) or takes as `query_tokens` (queries): the
    single path both sides go through, so index and query always name features the same way."""
    features = features or FeatureVocabulary.from_encoder(encoder)
    # No encode-time top_k / threshold: OpenSearch's model does not apply them; prune_type is the knob instead.
    emb = encoder.encode(list(texts), batch_size=batch_size, is_query=is_query, top_k=encoder.vocab_size,
                         threshold=0.0)
    return features.to_features(emb.matrix, field_type, prune_type, prune_ratio)
