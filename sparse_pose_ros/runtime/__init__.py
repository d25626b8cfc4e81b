"""What the exporters and every runtime share, below both: block geometry (MAC accounting from
masks, numpy only) and the facts a model file states (``ModelInfo``, ``BackendError``)."""
