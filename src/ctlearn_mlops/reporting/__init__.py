"""Figures and self-contained HTML/PDF reports."""
