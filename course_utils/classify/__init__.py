"""Chapter 10: a language model as a classifier.

genres (the First Folio's comedy/history/tragedy labels), passages (cutting plays into passages; splits by play and,
leakily, by passage), scoring (label log-probabilities with a shared prompt cache), prompts (k-shot templates),
calibration (contextual calibration, Zhao et al. 2021), metrics (accuracy, macro-F1), features (hidden states for a
linear probe), probe (a torch logistic regression), bow (bag-of-words features), answers (free answers parsed
into labels, greedy decoding constrained to the labels).
"""
