"""Participant and methods reports."""
