"""PP-OCRv5 text detection and recognition (Immich's ``ocr`` task), on the compiled ops of ``immich_ml.ops.ocr``."""
