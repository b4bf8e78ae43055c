"""Confidence heads: the score s(x) SCOUT's confidence map explains, one module each, in a registry."""

from scout_exp.heads.base import ConfidenceHead, create_head, list_heads, register_head

__all__ = ["ConfidenceHead", "create_head", "list_heads", "register_head"]
