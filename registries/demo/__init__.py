"""Demo and test content for registries: OCI images built in memory and pushed over the wire.

Nothing here touches the database, so `make demo` and the real-registry tests share it.
"""

from __future__ import annotations
