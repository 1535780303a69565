"""The 110 narrative grammar used by :mod:`simulation.narratives`.

Modules: ``engine`` (vectorised template pools), ``lexicon`` (keywords, who
terms, fillers, cue phrases), ``disputes`` (subtypes and dispute clauses),
``nondisputes`` (other call types), ``header`` (time, caller, contact, verb),
``demo`` (demo input, measurements and doc samples).
"""
