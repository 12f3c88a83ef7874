"""The compiler: the intermediate representations (UpdateGraph, Program), the one lowering that
decides CliqueNet semantics, the names a spec gives its code, and the parameter/FLOP summary.
"""
