"""Emitters: each turns the same Program into something runnable or readable."""
