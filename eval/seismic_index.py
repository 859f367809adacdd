"""SEISMIC approximate sparse retrieval (pyseismic-lsr, the library of Bruch et al.'s SEISMIC paper; OpenSearch 3.3's
`sparse_vector` ANN field implements the same algorithm) behind the `SparseIndex.search` interface.

SEISMIC keeps each term's `n_postings` highest-weighted documents (static pruning), groups every posting list into
blocks of similar documents with a summary vector each, and at query time walks the `query_cut` largest query terms,
skipping a block unless its summary's score exceeds `heap_factor` times the current k-th best score; surviving documents
are scored exactly from a forward index. With a k-NN graph (`nknn` neighbours per document, found at build time with
the index itself) a search also scores the `n_knn` stored neighbours of the documents it found (the library's
"pairing clustered inverted indexes with k-NN graphs"): near-duplicates of a hit the pruned posting lists dropped.

Component ids are 16-bit in the library. The index therefore numbers the ids that occur in the corpus densely
(0 .. n-1, in id order) and translates queries the same way: any vocabulary works as long as at most 65,536 distinct
ids occur in the documents (the full 250k-piece XLM-R vocabulary can: the quickstart model activates 13,585 ids
over the 5,006 MS MARCO-ko passages). Query terms no document has are dropped (they add 0 to every score). More distinct ids than
that is a ValueError naming the count."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

MAX_COMPONENTS = 1 << 16  # the library's u16 component ids


@dataclass
class SeismicOptions:
    """Build parameters (n_postings .. doc_cut: the names and defaults of `SeismicIndex.build_from_dataset`) and
    query parameters (query_cut, heap_factor: those of `SeismicIndex.search`)."""

    n_postings: int = 3500  # average postings kept per term (the paper's lambda; the library keeps a global budget)
    centroid_fraction: float = 0.1  # blocks per posting list, as a fraction of its length (beta)
    min_cluster_size: int = 2
    summary_energy: float = 0.4  # share of each block's L1 mass its summary keeps (alpha)
    max_fraction: float = 1.5  # a posting list holds at most n_postings x max_fraction documents
    doc_cut: int = 15  # terms of each document used to cluster the blocks
    query_cut: int = 10  # largest query terms walked
    heap_factor: float = 0.8  # scan a block when its summary score > heap_factor x the k-th best so far; lower: exacter
    nknn: int = 0  # k-NN graph: neighbours stored per document at build time (0: no graph)
    n_knn: int = 0  # neighbours of each found document scored at query time (at most nknn)
    num_threads: int = 1  # build and batched search (0: the library's default, all cores)

    def __post_init__(self):
        for name in ("n_postings", "min_cluster_size", "doc_cut", "query_cut", "nknn", "n_knn"):
            value, low = getattr(self, name), 0 if name in ("nknn", "n_knn") else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"seismic {name} must be an integer >= {low}, got {value!r}")
        if self.n_knn > self.nknn:
            raise ValueError(f"seismic n_knn must be <= nknn (the neighbours the graph stores), got {self.n_knn} > "
                             f"{self.nknn}")
        if not 0 < self.centroid_fraction <= 1:
            raise ValueError(f"seismic centroid_fraction must be in (0, 1], got {self.centroid_fraction}")
        if not 0 < self.summary_energy <= 1:
            raise ValueError(f"seismic summary_energy must be in (0, 1], got {self.summary_energy}")
        if not self.max_fraction >= 1:
            raise ValueError(f"seismic max_fraction must be >= 1, got {self.max_fraction}")
        if not self.heap_factor > 0:
            raise ValueError(f"seismic heap_factor must be > 0, got {self.heap_factor}")
        if self.num_threads < 0:
            raise ValueError(f"seismic num_threads must be >= 0, got {self.num_threads}")

    def build_kwargs(self) -> dict:
        kwargs = asdict(self)
        for name in ("query_cut", "heap_factor", "n_knn"):
            kwargs.pop(name)
        return kwargs


class SeismicIndex:
    """Approximate top-k by inner product over documents [n_docs, vocab] (CSR, column = token id), searched like
    eval.index.SparseIndex: `search(queries, k) -> (indices, scores)`, best first; rows with fewer than k hits are
    padded with index -1 and score 0 (SEISMIC returns only documents it scored)."""

    def __init__(self, documents: sp.spmatrix, options: Optional[SeismicOptions] = None):
        import seismic

        self.options = options or SeismicOptions()
        docs = sp.csr_matrix(documents, dtype=np.float32)
        if not docs.has_sorted_indices or docs.nnz != np.count_nonzero(docs.data):
            docs = docs.copy()  # fixed on a copy: never the caller's arrays (a 1M-document corpus is GBs)
            docs.eliminate_zeros()
            docs.sort_indices()
        if docs.nnz and docs.data.min() < 0:
            raise ValueError("SEISMIC needs non-negative document weights")
        self.num_docs, self.vocab_size = docs.shape
        used = np.unique(docs.indices)
        if len(used) > MAX_COMPONENTS:
            raise ValueError(f"{len(used):,} distinct token ids occur in the documents; SEISMIC (pyseismic-lsr) "
                             f"stores 16-bit component ids, at most {MAX_COMPONENTS:,}: use the exact SparseIndex "
                             f"or a trimmed vocabulary")
        self._component = np.full(self.vocab_size, -1, dtype=np.int64)  # token id -> dense component id
        self._component[used] = np.arange(len(used))
        # Queries name components by their decimal string (the library's `add_documents_by_id` convention).
        self._names = np.arange(len(used)).astype(str).astype(seismic.get_seismic_string())
        dataset = seismic.SeismicDataset(dim=max(1, len(used)))
        if docs.nnz:
            dataset.add_documents_by_id([str(i) for i in range(self.num_docs)], self._component[docs.indices],
                                        docs.data, docs.indptr.astype(np.int64))
        with _stdout_to():  # the library reports its build steps on stdout
            self._index = seismic.SeismicIndex.build_from_dataset(dataset, **self.options.build_kwargs())

    @property
    def nbytes(self) -> int:
        """Bytes of the index (forward index, posting lists with their summaries), as the library accounts them."""
        import re
        import tempfile

        with tempfile.TemporaryFile(mode="w+") as out:
            with _stdout_to(out.fileno()):
                self._index.print_space_usage_byte()
            out.seek(0)
            return int(re.search(r"Total: (\d+) Bytes", out.read()).group(1))

    def search(self, queries: sp.spmatrix, k: int = 100, batch_size: Optional[int] = None):
        """(indices [n_queries, k], scores [n_queries, k]) best first; k is capped at the number of documents.
        Several queries go through one batched call on `options.num_threads` threads."""
        del batch_size  # the SparseIndex signature; SEISMIC needs no score blocks
        queries = sp.csr_matrix(queries, dtype=np.float32)
        if queries.shape[1] != self.vocab_size:
            raise ValueError(f"queries have {queries.shape[1]} columns but the index vocabulary has "
                             f"{self.vocab_size}: were they encoded by the same model?")
        k = min(int(k), self.num_docs)
        n = queries.shape[0]
        indices = np.full((n, k), -1, dtype=np.int64)
        scores = np.zeros((n, k), dtype=np.float32)
        if k == 0 or n == 0:
            return indices, scores
        components, values = zip(*(self._translate(queries, i) for i in range(n)))
        o = self.options
        if n == 1:  # a search server's case
            hits = [self._index.search("0", components[0], values[0], k=k, query_cut=o.query_cut,
                                       heap_factor=o.heap_factor, n_knn=o.n_knn)]
        else:
            hits = self._index.batch_search(np.arange(n).astype(str).astype(self._names.dtype),
                                            list(components), list(values), k=k, query_cut=o.query_cut,
                                            heap_factor=o.heap_factor, n_knn=o.n_knn, num_threads=o.num_threads)
        for row in hits:  # batched results come in no fixed query order: each hit names its query
            if row:
                i = int(row[0][0])
                indices[i, :len(row)] = [int(doc) for _, _, doc in row]
                scores[i, :len(row)] = [score for _, score, _ in row]
        return indices, scores

    def _translate(self, queries: sp.csr_matrix, i: int):
        """Row i as (component names, values): terms no document has dropped."""
        lo, hi = queries.indptr[i], queries.indptr[i + 1]
        comp = self._component[queries.indices[lo:hi]]
        keep = (comp >= 0) & (queries.data[lo:hi] > 0)
        return self._names[comp[keep]], np.ascontiguousarray(queries.data[lo:hi][keep])


@contextlib.contextmanager
def _stdout_to(fd: int = 2):
    """Point file descriptor 1 at `fd` (stderr) for a native call that prints, so stdout keeps only our results."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(fd, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
