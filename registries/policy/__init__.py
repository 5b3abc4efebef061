"""Base-image policy: image references, Dockerfile FROM resolution, the catalog and its judgements."""
