"""What the exporters and every runtime share, below both: block geometry (MAC accounting from
masks, numpy only), the facts a model file states (``ModelInfo``, ``BackendError``) and the
options every backend takes with the rules they follow (``options``: ``BackendOptions``, the
input-size rule, the head-gating rule)."""
