"""Chapter 08: hallucination and retrieval-augmented generation, measured against a known answer key.

Modules: ``knowledge`` (a seeded knowledge base of fictional people, places and inventions, plus well-known real facts,
with a known answer for every question), ``matching`` (answer normalisation and matching, as in SQuAD's evaluation),
``grading`` (correct, abstained, no answer or wrong), ``chunking`` (documents and corpora into passages), ``bm25`` (BM25
from scratch: rank-bm25's BM25Okapi convention and Lucene's), ``dense`` (cosine search over MiniLM embeddings, cached),
``hybrid`` (reciprocal rank fusion), ``retrieval_metrics`` (recall@k, MRR), ``ann`` (FAISS exact and approximate
indexes), ``qa`` (closed-book and retrieval-augmented answers with their token probabilities, sampled answers),
``first_sentence`` (an answer is its first sentence: where it ends, and stopping generation there) and ``calibration``
(reliability bins, ECE, abstention curves, AUROC, self-consistency) and ``auroc_comparison`` (are two AUROCs on the same
answers different: DeLong's test, an exact permutation test, and the rule choosing one).
"""
