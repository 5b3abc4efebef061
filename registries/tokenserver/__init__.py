"""The registry token server: registries behind Customs send clients to /auth/token for bearer JWTs.

Flow and JWT rules: ../shared/docs/base-images-and-tokens.md part B. The registry verifies tokens
offline against the certificate bundle `manage.py registry_token_keys bundle` prints.
"""
