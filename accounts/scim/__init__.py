"""SCIM 2.0 provisioning (RFC 7643/7644) at /scim/v2/: identity providers create and retire people and groups.

scim2-models parses filters and PATCH paths and shapes errors and discovery documents; our own code
maps SCIM documents onto accounts' models, scoped to the directory of the presenting token.
"""
