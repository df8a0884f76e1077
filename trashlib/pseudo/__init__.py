"""Pseudo labels: the teacher, the labels it writes, and how good they are."""
