"""Encoders and fusion modules; each is built from its own config and returns features.

Import from the submodules (`medmm.models.medm_plm`, `.code_encoder`, `.text`, ...); nothing is
imported here so that `import medmm.models` stays cheap.
"""
