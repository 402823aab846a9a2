"""Evaluation of personalization, shared by every algorithm."""
