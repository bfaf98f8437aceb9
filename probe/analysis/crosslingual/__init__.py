"""Cross-lingual signal on sentence embeddings: retrieval, CKA, alignment, typology, correlation.

Pure numpy / scipy / torch: nothing here reads the cache or loads an encoder, so every
function can be checked against hand-computed values on small arrays.
"""
