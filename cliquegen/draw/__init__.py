"""Drawings: the graphviz views of a compiled spec (block, schedule, network) and the matplotlib
plumbing every figure of the package is drawn with.
"""
