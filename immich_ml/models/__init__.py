"""One class per network (CLIP visual/textual, SCRFD detection, ArcFace recognition) plus everything a
model needs around it: Immich's names (``constants``, ``catalog``), the model cache and downloads
(``cache``, ``hub``), loading and eviction (``base``, ``manager``). Workers use :mod:`immich_ml.pipeline`.
"""
